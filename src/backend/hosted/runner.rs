//! The job runner every hosted backend shares: encode, stage, create, poll, download,
//! decode, under `job-timeout`, with the remote job cancelled when the edit is dropped.

use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use futures::FutureExt;
use futures::future::BoxFuture;
use serde_json::Value;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use url::Url;

use super::http::{self, Http};
use super::media;
use crate::backend::runtime::runtime;
use crate::backend::{
    Backend, BackendError, Capabilities, ConfigError, EditParams, EditRequest, EditedClip,
    FrameCounts, InputFormat, JobReporter, JobUpdate, Resolution, Size,
};
use crate::memory::give_back_freed;

/// The first poll comes this long after the job was created; each next one 1.5 times later,
/// up to `POLL_MAX`.
const POLL_FIRST: Duration = Duration::from_millis(500);
const POLL_MAX: Duration = Duration::from_secs(5);

/// The largest reference image read: far past any image a model takes as a reference, and
/// sent again with every window.
const MAX_REFERENCE_BYTES: u64 = 32 << 20;

/// A file the provider must be able to read: the clip or the reference image.
#[derive(Debug, Clone)]
pub struct Media {
    pub data: Bytes,
    pub content_type: &'static str,
    pub file_name: String,
}

impl Media {
    /// The file as a `data:` URI, for providers that take inputs inline.
    pub fn data_uri(&self) -> String {
        format!(
            "data:{};base64,{}",
            self.content_type,
            base64::engine::general_purpose::STANDARD.encode(&self.data)
        )
    }
}

/// What a job is created from: where the provider finds the clip (and the reference
/// image), and the user's parameters.
pub struct Inputs<'a> {
    pub video: &'a str,
    pub reference_image: Option<&'a str>,
    pub params: &'a EditParams,
    pub size: Size,
}

/// A remote job, as its protocol needs to find it again.
#[derive(Debug)]
pub struct Job {
    pub id: String,
    /// Where its state is asked for.
    pub poll: Url,
    /// Where it is cancelled, if the provider can cancel.
    pub cancel: Option<Url>,
    /// Where the result is fetched once done, if apart from the state (fal).
    pub result: Option<Url>,
    /// A body the poll request carries (Cog polls by sending the prediction again).
    pub request: Option<Value>,
    /// A server slot held while the job runs (Cog fleets).
    pub slot: Option<OwnedSemaphorePermit>,
}

impl Job {
    pub fn new(id: String, poll: Url) -> Self {
        Self {
            id,
            poll,
            cancel: None,
            result: None,
            request: None,
            slot: None,
        }
    }

    /// Refuses a job whose URLs leave the provider's own origin (see
    /// [`Http::check_own_url`]). A cancel URL elsewhere is dropped first: the job is then
    /// cancelled only where its provider is.
    fn check_urls(&mut self, http: &Http) -> Result<(), BackendError> {
        if let Some(cancel) = &self.cancel
            && let Err(error) = http.check_own_url(cancel)
        {
            self.cancel = None;
            return Err(error);
        }
        http.check_own_url(&self.poll)?;
        self.result
            .as_ref()
            .map_or(Ok(()), |result| http.check_own_url(result))
    }
}

/// `base` with a job's `id` as one more path segment, then `tail`, where a provider gives
/// no URL of its own: the id is the provider's text, and "/", "?" and "#" in it are
/// escaped, so that it names the job and no other path.
pub fn job_url(mut base: Url, id: &str, tail: &[&str]) -> Result<Url, BackendError> {
    // Segments that would move up the path are dropped, not escaped, by `push`.
    if matches!(id, "" | "." | "..") {
        return Err(BackendError::Protocol(format!(
            "the job id {id:?} cannot name a job"
        )));
    }
    base.path_segments_mut()
        .map_err(|()| BackendError::Protocol("the endpoint takes no job paths".into()))?
        .pop_if_empty()
        .push(id)
        .extend(tail);
    Ok(base)
}

/// Where a job stands.
#[derive(Debug)]
pub enum Poll {
    Pending { progress: Option<f64> },
    Done(Output),
    Failed(String),
}

/// Where the edited clip is.
#[derive(Debug)]
pub enum Output {
    Url(Url),
    Inline(Vec<u8>),
}

impl Output {
    /// Reads an output value: a URL, or a `data:` URI (Cog's default).
    pub fn parse(value: &str) -> Result<Self, BackendError> {
        if let Some(rest) = value.strip_prefix("data:") {
            let (_, payload) = rest.split_once(";base64,").ok_or_else(|| {
                BackendError::Protocol("a data URI output that is not base64".into())
            })?;
            let data = base64::engine::general_purpose::STANDARD
                .decode(payload.trim())
                .map_err(|e| BackendError::Protocol(format!("a data URI output: {e}")))?;
            return Ok(Output::Inline(data));
        }
        Url::parse(value).map(Output::Url).map_err(|e| {
            let value = super::short(&value.into());
            BackendError::Protocol(format!("output {value} is not a URL: {e}"))
        })
    }
}

/// What a hosted backend tells the element about itself: known when it is built, and
/// no part of the protocol.
#[derive(Debug, Clone, Copy)]
pub struct Profile {
    pub name: &'static str,
    /// The clip lengths the model takes.
    pub frame_counts: FrameCounts,
    /// Whether the model has a reference image input.
    pub reference_image: bool,
    pub max_concurrency: usize,
}

impl Profile {
    fn capabilities(&self, resolution: Resolution) -> Capabilities {
        Capabilities {
            // Every model behind a hosted backend is a Wan model.
            sizes: resolution.wan_buckets(),
            frame_counts: self.frame_counts,
            // Encoded to H.264 from it: no RGB between the stream and the upload.
            input: InputFormat::I420,
            // One image: every hosted model takes a single reference.
            reference_images: self.reference_image.into(),
            first_frame: false,
            max_concurrency: self.max_concurrency,
        }
    }
}

/// One provider's protocol: paths, bodies and status words. Everything else is the
/// runner's.
pub trait Protocol: Send + Sync + 'static {
    /// Makes a file readable by the provider; returns the URL (or data URI) to pass.
    fn stage(
        &self,
        http: &Http,
        media: Media,
    ) -> impl Future<Output = Result<String, BackendError>> + Send;

    /// Creates the job. Never retried blindly: see [`super::http::Kind::Create`].
    fn create(
        &self,
        http: &Http,
        inputs: Inputs<'_>,
    ) -> impl Future<Output = Result<Job, BackendError>> + Send;

    fn poll(
        &self,
        http: &Http,
        job: &Job,
    ) -> impl Future<Output = Result<Poll, BackendError>> + Send;

    /// Asks the provider to stop the job. Providers without a cancel request keep this
    /// default: the abandoned job runs to its end remotely.
    fn cancel(
        &self,
        _http: &Http,
        _job: &Job,
    ) -> impl Future<Output = Result<(), BackendError>> + Send {
        async { Ok(()) }
    }
}

const NEVER_CLOSED: &str = "the runner never closes its semaphores";

/// A hosted backend: one protocol over the shared runner.
pub struct Hosted<P>(Arc<Runner<P>>);

struct Runner<P> {
    profile: Profile,
    protocol: P,
    http: Http,
    /// Zero means no limit.
    job_timeout: Duration,
    /// One window at a time is encoded, and one decoded (its clip taken frame by frame).
    /// Each takes every core, so the CPU loses nothing to the wait, and memory gains a
    /// lot: an x264 encoder holds tens of MiB of its own, and a window being decoded is
    /// held twice (its inputs wait with the job for a retry while its edit is made).
    encoding: Semaphore,
    decoding: Arc<Semaphore>,
    /// The reference image as last read, by its path: read once, not for every window.
    reference_image: tokio::sync::Mutex<Option<(PathBuf, Media)>>,
}

impl<P: Protocol> Hosted<P> {
    pub fn new(profile: Profile, protocol: P, http: Http, job_timeout: Duration) -> Self {
        Self(Arc::new(Runner {
            profile,
            protocol,
            http,
            job_timeout,
            encoding: Semaphore::new(1),
            decoding: Arc::new(Semaphore::new(1)),
            reference_image: tokio::sync::Mutex::default(),
        }))
    }
}

impl<P: Protocol> Runner<P> {
    async fn run(self: Arc<Self>, request: EditRequest) -> Result<EditedClip, BackendError> {
        let EditRequest {
            frames,
            frame_rate,
            params,
            reporter,
            ..
        } = request;
        if frames.len() == 0 {
            return Err(BackendError::Frames("an empty window".into()));
        }
        let size = frames.size();
        // Before any work: a file that cannot be sent fails the window at once.
        let image = match params.reference_images.first() {
            Some(path) => Some(self.reference_image(path).await?),
            None => None,
        };

        let encoding = self.encoding.acquire().await.expect(NEVER_CLOSED);
        let clip = blocking(move || media::encode_mp4(frames, frame_rate)).await;
        drop(encoding);
        give_back_freed();
        let clip = clip?;
        let video = self
            .protocol
            .stage(
                &self.http,
                Media {
                    data: clip.into(),
                    content_type: "video/mp4",
                    file_name: "window.mp4".into(),
                },
            )
            .await?;
        let reference_image = match image {
            Some(image) => Some(self.protocol.stage(&self.http, image).await?),
            None => None,
        };

        let mut job = self
            .protocol
            .create(
                &self.http,
                Inputs {
                    video: &video,
                    reference_image: reference_image.as_deref(),
                    params: &params,
                    size,
                },
            )
            .await?;
        let own_urls = job.check_urls(&self.http);
        reporter.report(JobUpdate::Submitted {
            job_id: http::clip(&job.id),
        });
        let mut guard = CancelGuard {
            runner: self.clone(),
            job: Some(job),
        };
        // Dropping the guard cancels the job, where its cancel URL is the provider's own.
        own_urls?;
        let job = guard.job.as_ref().expect("set above");
        let output = self.wait(job, &reporter).await;
        if matches!(output, Ok(_) | Err(BackendError::JobFailed { .. })) {
            // The job ended: nothing left to cancel, and its slot is free.
            guard.job = None;
        } else {
            // Lost track of a job that may still run (its polls failed): stop it.
            drop(guard);
        }
        let data = match output? {
            Output::Url(url) => self.http.download(&url).await?,
            Output::Inline(data) => data,
        };
        let decoding = self
            .decoding
            .clone()
            .acquire_owned()
            .await
            .expect(NEVER_CLOSED);
        let frames = blocking(move || Ok(media::decode_edit(data, size)?)).await?;
        Ok(EditedClip::in_time_order(frames.map(move |frame| {
            // Held until the clip is taken or dropped.
            let _ = &decoding;
            frame.map_err(BackendError::from)
        })))
    }

    /// The reference image at `path`, read the first time a window needs it: windows
    /// waiting for the read share it.
    async fn reference_image(&self, path: &Path) -> Result<Media, BackendError> {
        let mut kept = self.reference_image.lock().await;
        if let Some((read_from, image)) = &*kept
            && read_from == path
        {
            return Ok(image.clone());
        }
        let image = {
            let path = path.to_owned();
            blocking(move || read_image(&path)).await?
        };
        *kept = Some((path.to_owned(), image.clone()));
        Ok(image)
    }

    async fn wait(&self, job: &Job, reporter: &JobReporter) -> Result<Output, BackendError> {
        let mut interval = POLL_FIRST;
        loop {
            match self.protocol.poll(&self.http, job).await? {
                Poll::Done(output) => return Ok(output),
                Poll::Failed(message) => {
                    return Err(BackendError::JobFailed {
                        job_id: http::clip(&job.id),
                        message,
                    });
                }
                Poll::Pending { progress } => reporter.report(JobUpdate::Running { progress }),
            }
            tokio::time::sleep(interval).await;
            interval = interval.mul_f64(1.5).min(POLL_MAX);
        }
    }
}

impl<P: Protocol> Backend for Hosted<P> {
    fn name(&self) -> &str {
        self.0.profile.name
    }

    fn capabilities(&self, resolution: Resolution) -> Capabilities {
        self.0.profile.capabilities(resolution)
    }

    fn edit(&self, request: EditRequest) -> BoxFuture<'static, Result<EditedClip, BackendError>> {
        let runner = self.0.clone();
        let timeout = runner.job_timeout;
        let job = async move {
            let run = runner.run(request);
            if timeout.is_zero() {
                return run.await;
            }
            // Dropping `run` on timeout drops its cancel guard: the remote job is cancelled.
            tokio::time::timeout(timeout, run)
                .await
                .unwrap_or(Err(BackendError::Timeout(timeout)))
        };
        // The job runs on the plugin's runtime whoever polls the edit; dropping the edit
        // aborts it there.
        let mut handle = AbortOnDrop(runtime().spawn(job));
        async move {
            match (&mut handle.0).await {
                Ok(result) => result,
                Err(e) => Err(BackendError::Model(format!("the job task ended: {e}"))),
            }
        }
        .boxed()
    }
}

struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// Cancels the remote job if the edit is dropped (flush, seek, state change, timeout)
/// before the job ended.
struct CancelGuard<P: Protocol> {
    runner: Arc<Runner<P>>,
    job: Option<Job>,
}

impl<P: Protocol> Drop for CancelGuard<P> {
    fn drop(&mut self) {
        if let Some(mut job) = self.job.take() {
            // The server's slot goes back now, not when the cancel is answered: a cancel
            // that hangs must not keep the next window off a Cog server (which answers it
            // 409, asked again, until the cancel lands).
            drop(job.slot.take());
            let runner = self.runner.clone();
            runtime().spawn(async move {
                // Best effort, and briefly: the job is abandoned whether or not the
                // provider hears.
                let deadline = runner.http.pacing().cancel_deadline;
                let cancel = runner.protocol.cancel(&runner.http, &job);
                let _ = tokio::time::timeout(deadline, cancel).await;
            });
        }
    }
}

async fn blocking<T: Send + 'static>(
    f: impl FnOnce() -> Result<T, BackendError> + Send + 'static,
) -> Result<T, BackendError> {
    tokio::task::spawn_blocking(f)
        .await
        .map_err(|e| BackendError::Output(format!("the media task ended: {e}")))?
}

/// Reads a reference image, refusing a file over `MAX_REFERENCE_BYTES` from its size
/// before reading it, and while reading it (it may grow).
fn read_image(path: &Path) -> Result<Media, BackendError> {
    let refused = |why: String| {
        BackendError::Config(ConfigError::Invalid {
            property: "reference-image",
            why: format!("{}: {why}", path.display()),
        })
    };
    let content_type = match path
        .extension()
        .and_then(|e| e.to_str())
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        Some("png") => "image/png",
        Some("jpg" | "jpeg") => "image/jpeg",
        Some("webp") => "image/webp",
        _ => return Err(refused("must be a PNG, JPEG or WebP file".into())),
    };
    let too_big = |size: u64| {
        refused(format!(
            "{} MiB or more, over the {} MiB a reference image may have: give a smaller \
             image",
            size >> 20,
            MAX_REFERENCE_BYTES >> 20
        ))
    };
    let file = std::fs::File::open(path).map_err(|e| refused(e.to_string()))?;
    let size = file.metadata().map_err(|e| refused(e.to_string()))?.len();
    if size > MAX_REFERENCE_BYTES {
        return Err(too_big(size));
    }
    let mut data = Vec::with_capacity(size as usize);
    file.take(MAX_REFERENCE_BYTES + 1)
        .read_to_end(&mut data)
        .map_err(|e| refused(e.to_string()))?;
    if data.len() as u64 > MAX_REFERENCE_BYTES {
        return Err(too_big(data.len() as u64));
    }
    Ok(Media {
        data: data.into(),
        content_type,
        file_name: path
            .file_name()
            .map_or_else(|| "reference".into(), |n| n.to_string_lossy().into_owned()),
    })
}

/// The progress a tqdm line such as ` 42%|####      | 21/50` shows: the last one wins.
pub fn tqdm_progress(logs: &str) -> Option<f64> {
    let end = logs.rfind("%|")?;
    let digits = logs[..end]
        .chars()
        .rev()
        .take_while(char::is_ascii_digit)
        .count();
    let percent: f64 = logs[end - digits..end].parse().ok()?;
    Some((percent / 100.0).clamp(0.0, 1.0))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tqdm_lines_give_progress() {
        assert_eq!(
            tqdm_progress("loading\n 42%|####      | 21/50\n"),
            Some(0.42)
        );
        assert_eq!(
            tqdm_progress(" 10%|#  | 5/50\n100%|##########| 50/50 [00:10]\n"),
            Some(1.0)
        );
        assert_eq!(tqdm_progress("no bar here"), None);
    }

    #[test]
    fn job_ids_are_one_escaped_segment() {
        let base = Url::parse("https://api.example.com/v1/predictions").unwrap();
        let url = job_url(base.clone(), "../../v1/files?x#", &["cancel"]).unwrap();
        assert_eq!(
            url.as_str(),
            "https://api.example.com/v1/predictions/..%2F..%2Fv1%2Ffiles%3Fx%23/cancel"
        );
        for id in ["", ".", ".."] {
            assert_eq!(
                job_url(base.clone(), id, &[]).unwrap_err().to_string(),
                format!("unexpected answer: the job id {id:?} cannot name a job")
            );
        }
    }

    #[test]
    fn outputs_are_urls_or_data_uris() {
        match Output::parse("data:video/mp4;base64,AAEC").unwrap() {
            Output::Inline(data) => assert_eq!(data, vec![0, 1, 2]),
            other => panic!("{other:?}"),
        }
        match Output::parse("https://replicate.delivery/x/out.mp4").unwrap() {
            Output::Url(url) => assert_eq!(url.host_str(), Some("replicate.delivery")),
            other => panic!("{other:?}"),
        }
        assert!(Output::parse("not a url").is_err());
        assert!(Output::parse("data:video/mp4,plain").is_err());
    }
}
