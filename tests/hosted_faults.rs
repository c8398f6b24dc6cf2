//! Faults of hosted providers, each with its outcome: the error text, the requests the
//! server counted (retries, cancels), and nothing sent twice that must not be.
//!
//! These drive the backends directly through the `Backend` trait; the pipeline tests in
//! `hosted_providers.rs` and `hosted_cancel.rs` show the element's side.

#[path = "support/hosted/mod.rs"]
mod hosted;

use std::sync::Arc;
use std::time::Duration;

use gstwanedit::backend::hosted::Limits;
use gstwanedit::backend::runtime::runtime;
use gstwanedit::backend::{
    Backend, BackendConfig, BackendError, BackendKind, ClipFrame, EditParams, EditRequest,
    JobReporter,
};
use hosted::server::KEY;
use hosted::{Fault, Kind, Mock, Output, Route, Seen};

fn backend_with(mock: &Mock, key: &str, job_timeout: u64, limits: Limits) -> Arc<dyn Backend> {
    let kind = mock.kind.backend();
    let config = BackendConfig {
        kind,
        model: None,
        endpoint: Some(mock.url.clone()),
        api_key: Some(key.into()),
        job_timeout: Duration::from_secs(job_timeout),
        params: EditParams {
            prompt: "invert it".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let model = (kind == BackendKind::Together).then(|| "Wan-AI/Wan2.2-VideoEdit".to_owned());
    gstwanedit::backend::hosted::create(kind, &BackendConfig { model, ..config }, limits).unwrap()
}

fn backend(mock: &Mock) -> Arc<dyn Backend> {
    backend_with(mock, KEY, 60, Limits::default())
}

fn request() -> EditRequest {
    hosted::window(None, JobReporter::discard())
}

/// The edited clip's frames, decoded.
fn edit(backend: &Arc<dyn Backend>) -> Result<Vec<ClipFrame>, BackendError> {
    let edit = backend.edit(request());
    runtime()
        .block_on(async {
            tokio::time::timeout(Duration::from_secs(120), edit)
                .await
                .expect("no edit takes two minutes against a loopback server")
        })?
        .into_frames()
        .collect()
}

/// Waits (boundedly) until the server has seen `count` requests for `route`.
fn wait_for(mock: &Mock, route: Route, count: usize) -> bool {
    for _ in 0..200 {
        if mock.count(route) >= count {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// Serves `fault` to the create of a `kind` job, edits with `job_timeout`, and returns the
/// edit's error once it is clear that the create went out once: the job may exist, so it
/// is never created twice.
fn failed_create(kind: Kind, fault: Fault, job_timeout: u64) -> BackendError {
    let mock = Mock::start(kind);
    mock.fault(Route::Create, fault);
    let error = edit(&backend_with(&mock, KEY, job_timeout, Limits::default())).unwrap_err();
    assert_eq!(
        mock.count(Route::Create),
        1,
        "the job may exist: never created twice ({error})"
    );
    error
}

/// A `kind` server whose jobs never end.
fn endless(kind: Kind) -> Arc<Mock> {
    let mock = Mock::start(kind);
    mock.never_finish
        .store(true, std::sync::atomic::Ordering::SeqCst);
    mock
}

/// The cancel request, once the server has seen it.
fn cancel_sent(mock: &Mock) -> Seen {
    assert!(
        wait_for(mock, Route::Cancel, 1),
        "the cancel request was sent"
    );
    mock.seen()
        .into_iter()
        .find(|s| s.route == Route::Cancel)
        .unwrap()
}

#[test]
fn a_good_edit_returns_the_providers_clip_as_it_came() {
    let mock = Mock::start(Kind::Replicate);
    let clip = edit(&backend(&mock)).unwrap();
    // 33 frames at 16 fps last 2.0625 s: at 24 fps that is 50 frames, at half the size.
    assert_eq!(clip.len(), 50);
    let image = clip[0].image.to_rgb().unwrap();
    assert_eq!((image.width, image.height), (32, 24));
    assert_eq!(clip[3].pts, gst::ClockTime::from_nseconds(125_000_000));
    let first = image.pixel(10, 10);
    assert!(first[1].abs_diff(155) <= 6, "inverted: {first:?}");
}

#[test]
fn a_refused_key_is_an_error_naming_the_environment_variable() {
    let mock = Mock::start(Kind::Replicate);
    let backend = backend_with(&mock, "wrong-key", 60, Limits::default());
    let error = edit(&backend).unwrap_err();
    let BackendError::Http { status, message } = &error else {
        panic!("{error:?}");
    };
    assert_eq!(*status, 401);
    assert!(
        message.contains("You did not pass a valid authentication token"),
        "{message}"
    );
    assert!(message.contains("REPLICATE_API_TOKEN"), "{message}");
    assert_eq!(mock.seen().len(), 1, "a refused key is not retried");
}

#[test]
fn bad_input_fails_at_once_with_the_providers_detail() {
    let fault = Fault::new(
        422,
        r#"{"detail":[{"loc":["body","video_url"],"msg":"video must last 2 to 10 s","type":"value_error"}]}"#,
    );
    let error = failed_create(Kind::Fal, fault, 60);
    assert_eq!(
        error.to_string(),
        "HTTP 422: body.video_url: video must last 2 to 10 s"
    );
}

#[test]
fn a_throttled_create_waits_for_retry_after_then_succeeds() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(
        Route::Create,
        Fault::new(
            429,
            r#"{"title":"Too Many Requests","detail":"Request was throttled. Your rate limit resets in ~1s.","status":429}"#,
        )
        .header("retry-after", "1"),
    );
    edit(&backend(&mock)).unwrap();
    let creates: Vec<_> = mock
        .seen()
        .into_iter()
        .filter(|s| s.route == Route::Create)
        .collect();
    assert_eq!(
        creates.len(),
        2,
        "429 means not accepted: the create is sent again"
    );
    let waited = creates[1].at - creates[0].at;
    assert!(waited >= Duration::from_millis(950), "waited {waited:?}");
}

#[test]
fn server_errors_on_polls_are_retried_with_backoff() {
    let mock = Mock::start(Kind::Wavespeed);
    for _ in 0..2 {
        mock.fault(
            Route::Poll,
            Fault::new(500, r#"{"code":500,"message":"internal error"}"#),
        );
    }
    edit(&backend(&mock)).unwrap();
    assert!(
        mock.count(Route::Poll) >= 3,
        "two failed polls, then the ones that worked"
    );
    assert_eq!(mock.count(Route::Create), 1);
}

#[test]
fn a_server_error_on_create_is_not_sent_again() {
    let fault = Fault::new(
        503,
        r#"{"error":{"message":"The server is overloaded","type":"server_error"}}"#,
    );
    let error = failed_create(Kind::Together, fault, 60);
    assert_eq!(error.to_string(), "HTTP 503: The server is overloaded");
}

#[test]
fn a_create_that_never_answers_ends_at_job_timeout() {
    let fault = Fault::new(201, "{}").delay(Duration::from_secs(30));
    let error = failed_create(Kind::Replicate, fault, 2);
    assert!(
        matches!(error, BackendError::Timeout(t) if t == Duration::from_secs(2)),
        "{error:?}"
    );
}

#[test]
fn a_failed_job_carries_the_models_message() {
    let mock = Mock::start(Kind::Fal);
    *mock.fail_with.lock().unwrap() = Some("CUDA out of memory".into());
    let error = edit(&backend(&mock)).unwrap_err();
    assert_eq!(error.to_string(), "job job0002 failed: CUDA out of memory");
}

#[test]
fn a_job_that_never_ends_is_cancelled_at_job_timeout() {
    let mock = endless(Kind::Replicate);
    let backend = backend_with(&mock, KEY, 3, Limits::default());
    let error = edit(&backend).unwrap_err();
    assert!(matches!(error, BackendError::Timeout(_)), "{error:?}");
    let cancel = cancel_sent(&mock);
    assert_eq!(cancel.path, "/v1/predictions/job0002/cancel");
}

#[test]
fn dropping_an_edit_cancels_its_job() {
    let mock = endless(Kind::Fal);
    let backend = backend(&mock);
    let edit = backend.edit(request());
    let running = runtime().spawn(edit);
    assert!(wait_for(&mock, Route::Poll, 1));
    running.abort();
    let cancel = cancel_sent(&mock);
    assert_eq!(cancel.method, "PUT");
    assert_eq!(cancel.path, "/fal-ai/wan/requests/job0002/cancel");
}

#[test]
fn a_truncated_clip_is_an_output_error() {
    let mock = Mock::start(Kind::Wavespeed);
    *mock.output.lock().unwrap() = Output::Truncated;
    let error = edit(&backend(&mock)).unwrap_err();
    assert!(matches!(error, BackendError::Output(_)), "{error:?}");
}

#[test]
fn an_expired_output_url_is_an_error_that_says_so() {
    let mock = Mock::start(Kind::Replicate);
    *mock.output.lock().unwrap() = Output::Expired;
    let error = edit(&backend(&mock)).unwrap_err();
    let text = error.to_string();
    assert!(text.contains("has expired or is gone: HTTP 403"), "{text}");
    assert!(text.contains("Request has expired"), "{text}");
}

#[test]
fn an_output_over_the_size_cap_is_refused() {
    let mock = Mock::start(Kind::Fal);
    *mock.output.lock().unwrap() = Output::Padded(20_000);
    let limits = Limits {
        max_output_bytes: 16_000,
        ..Limits::default()
    };
    let backend = backend_with(&mock, KEY, 60, limits);
    let error = edit(&backend).unwrap_err();
    assert!(
        error.to_string().contains("over the 16000 byte cap"),
        "{error}"
    );
}

#[test]
fn malformed_json_is_a_protocol_error_and_the_lost_job_is_cancelled() {
    let mock = Mock::start(Kind::Replicate);
    mock.malformed
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let error = edit(&backend(&mock)).unwrap_err();
    let BackendError::Protocol(text) = &error else {
        panic!("{error:?}");
    };
    assert!(text.contains("not JSON"), "{text}");
    assert_eq!(
        mock.count(Route::Poll),
        1,
        "a malformed answer is not retried"
    );
    assert!(
        wait_for(&mock, Route::Cancel, 1),
        "the job it lost track of is cancelled"
    );
}

#[test]
fn a_busy_cog_server_is_asked_again() {
    let mock = Mock::start(Kind::Cog);
    mock.fault(
        Route::Create,
        Fault::new(
            409,
            r#"{"error":"At capacity - all prediction slots busy"}"#,
        ),
    );
    let config = BackendConfig {
        kind: BackendKind::Cog,
        endpoint: Some(mock.url.clone()),
        job_timeout: Duration::from_secs(60),
        ..Default::default()
    };
    let backend = gstwanedit::backend::create(&config).unwrap();
    assert_eq!(backend.name(), "cog");
    let clip = edit(&backend).unwrap();
    assert_eq!(clip.len(), 50);
    assert_eq!(mock.count(Route::Create), 2);
    assert!(mock.seen().iter().all(|s| s.authorization.is_none()));
}

#[test]
fn the_reference_image_is_uploaded_and_passed_to_the_model() {
    let mock = Mock::start(Kind::Wavespeed);
    let image = std::env::temp_dir().join(format!("wanedit-ref-{}.png", std::process::id()));
    std::fs::write(
        &image,
        b"\x89PNG\r\n\x1a\n not really a png, the server only stores it",
    )
    .unwrap();
    let backend = backend(&mock);
    assert_eq!(backend.capabilities(Default::default()).reference_images, 1);
    let mut request = request();
    request.params.reference_images = vec![image.clone()];
    let edit = backend.edit(request);
    runtime().block_on(edit).unwrap();
    std::fs::remove_file(&image).unwrap();

    let tickets: Vec<_> = mock
        .seen()
        .into_iter()
        .filter(|s| s.path == "/api/v3/media/uploads")
        .map(|s| (s.body["filename"].clone(), s.body["content_type"].clone()))
        .collect();
    assert_eq!(tickets.len(), 2, "the clip and the image");
    assert!(tickets.contains(&(
        image.file_name().unwrap().to_str().unwrap().into(),
        "image/png".into()
    )));
    let input = &mock.inputs()[0];
    let images = input["images"].as_array().unwrap();
    assert_eq!(images.len(), 1);
    assert!(
        images[0]
            .as_str()
            .unwrap()
            .starts_with(&format!("{}/files/", mock.url))
    );
    assert_ne!(images[0], input["video"]);
}
