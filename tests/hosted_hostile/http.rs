//! Answers that attack the HTTP layer: bodies, headers, redirects, stalls.

use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant};

use gstwanedit::backend::hosted::{Limits, Pacing};
use gstwanedit::backend::runtime::runtime;
use gstwanedit::backend::{
    Backend, BackendConfig, BackendError, BackendKind, ClipFrame, EditParams, JobReporter,
};

use super::edit_with;
use crate::hosted::server::KEY;
use crate::hosted::{Fault, Kind, Mock, Route, window};

/// The most a test lets a server stream before the client must have hung up: the client's
/// cap, what hyper reads ahead and what the kernel's socket buffers hold.
const STREAM_BOUND: u64 = 24 << 20;

/// Short pacing: a stall costs half a second, a retry a few milliseconds.
fn pacing() -> Pacing {
    Pacing {
        request_timeout: Duration::from_millis(500),
        first_retry: Duration::from_millis(10),
        ..Pacing::default()
    }
}

fn backend(mock: &Mock, pacing: Pacing) -> Arc<dyn Backend> {
    let kind = mock.kind.backend();
    let config = BackendConfig {
        kind,
        endpoint: Some(mock.url.clone()),
        api_key: (kind != BackendKind::Cog).then(|| KEY.to_owned()),
        job_timeout: Duration::from_secs(30),
        params: EditParams {
            prompt: "invert it".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let limits = Limits {
        // The clip is a few KiB: a cap far above it, far below what a flood sends.
        max_output_bytes: 64 << 20,
        pacing,
    };
    gstwanedit::backend::hosted::create(kind, &config, limits).unwrap()
}

fn edit(backend: &Arc<dyn Backend>) -> (Result<Vec<ClipFrame>, BackendError>, Duration) {
    edit_with(backend, window(None, JobReporter::discard()))
}

fn streamed(mock: &Mock) -> u64 {
    mock.streamed.load(Ordering::SeqCst)
}

#[test]
fn an_endless_error_body_is_read_only_to_a_small_cap() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(Route::Poll, Fault::flood(500));
    let (clip, _) = edit(&backend(&mock, pacing()));
    // A 500 may pass: the poll goes again and the edit rides through.
    assert_eq!(clip.unwrap().len(), 50);
    assert!(mock.count(Route::Poll) >= 2);
    assert!(
        streamed(&mock) < STREAM_BOUND,
        "the client read {} bytes of an error body",
        streamed(&mock)
    );
}

#[test]
fn an_endless_error_body_on_a_download_is_cut_and_the_error_is_clear() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(Route::Download, Fault::flood(403));
    let (clip, _) = edit(&backend(&mock, pacing()));
    let error = clip.unwrap_err().to_string();
    assert!(
        error.starts_with("unusable output: the output http://127.0.0.1:")
            && error.contains(".mp4 has expired or is gone: HTTP 403"),
        "{error}"
    );
    assert!(
        streamed(&mock) < STREAM_BOUND,
        "the client read {} bytes of an error body",
        streamed(&mock)
    );
}

#[test]
fn a_retry_after_beyond_any_duration_waits_only_the_cap() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(
        Route::Create,
        Fault::status(429).header("retry-after", "1e20"),
    );
    mock.fault(
        Route::Poll,
        Fault::status(503).header("retry-after-ms", "1e23"),
    );
    let pacing = Pacing {
        backoff_cap: Duration::from_millis(200),
        ..pacing()
    };
    let (clip, took) = edit(&backend(&mock, pacing));
    assert_eq!(clip.unwrap().len(), 50);
    assert_eq!(mock.count(Route::Create), 2);
    assert!(took < Duration::from_secs(10), "{took:?}");
}

#[test]
fn a_json_answer_that_never_ends_is_cut_at_the_json_cap() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(Route::Poll, Fault::flood(200));
    let (clip, _) = edit(&backend(&mock, pacing()));
    let error = clip.unwrap_err().to_string();
    assert!(
        error.starts_with("unexpected answer: the answer is ")
            && error.ends_with("bytes or more, over the 4194304 byte cap for a JSON answer"),
        "{error}"
    );
    assert!(
        streamed(&mock) < STREAM_BOUND,
        "the client read {} bytes of a poll answer",
        streamed(&mock)
    );
}

#[test]
fn downloads_send_no_referer_through_redirects() {
    let mock = Mock::start(Kind::Replicate);
    // The output moves to a signed URL, and on from there.
    mock.fault(
        Route::Download,
        Fault::new(302, "").header("location", "?X-Amz-Signature=s3cr3t"),
    );
    mock.fault(
        Route::Download,
        Fault::new(302, "").header("location", "?hop=2"),
    );
    let (clip, _) = edit(&backend(&mock, pacing()));
    assert_eq!(clip.unwrap().len(), 50);
    let downloads: Vec<_> = mock
        .seen()
        .into_iter()
        .filter(|s| s.route == Route::Download)
        .collect();
    assert_eq!(downloads.len(), 3);
    assert_eq!(downloads[2].query, "hop=2");
    for seen in downloads {
        assert_eq!(seen.referer, None, "{}?{}", seen.path, seen.query);
    }
}

#[test]
fn a_redirect_loop_ends_after_ten_hops() {
    let mock = Mock::start(Kind::Replicate);
    for hop in 0..20 {
        mock.fault(
            Route::Download,
            Fault::new(302, "").header("location", &format!("?hop={hop}")),
        );
    }
    let (clip, _) = edit(&backend(&mock, pacing()));
    let error = clip.unwrap_err().to_string();
    assert!(
        error.starts_with("unexpected answer: error following redirect: more than 10 redirects"),
        "{error}"
    );
    // The first request and ten redirects, and no retry of a redirect refused.
    assert_eq!(mock.count(Route::Download), 11, "{error}");
}

#[test]
fn transport_errors_name_urls_without_their_query() {
    let mock = Mock::start(Kind::Replicate);
    // A signed output URL on a port that refuses the connection.
    mock.fault(
        Route::Poll,
        Fault::new(
            200,
            r#"{"status": "succeeded", "output": "http://127.0.0.1:1/out.mp4?X-Amz-Signature=s3cr3t"}"#,
        ),
    );
    let (clip, _) = edit(&backend(&mock, pacing()));
    let error = clip.unwrap_err().to_string();
    assert!(
        error.starts_with("transport error: ")
            && error.contains("(http://127.0.0.1:1/out.mp4)")
            && !error.contains("s3cr3t"),
        "{error}"
    );
}

#[test]
fn a_trickling_download_ends_within_its_deadline() {
    let mock = Mock::start(Kind::Replicate);
    for _ in 0..6 {
        // A byte every 50 ms never stalls for the 500 ms request timeout.
        mock.fault(
            Route::Download,
            Fault::trickle(200, Duration::from_millis(50)).header("content-type", "video/mp4"),
        );
    }
    let (clip, took) = edit(&backend(&mock, pacing()));
    let error = clip.unwrap_err().to_string();
    assert!(
        error.starts_with("transport error: the answer came too slowly: "),
        "{error}"
    );
    // Six tries of about the 500 ms allowance each (the body is all but empty), and the
    // backoff between them.
    assert_eq!(mock.count(Route::Download), 6);
    assert!(took < Duration::from_secs(10), "{took:?}: {error}");
}

#[test]
fn an_upload_slower_than_the_request_timeout_goes_through() {
    let mock = Mock::start(Kind::Replicate);
    // 16 MiB at 4 MiB/s: seconds, where the request timeout is half of one.
    *mock.read_rate.lock().unwrap() = Some(4 << 20);
    let image = std::env::temp_dir().join(format!("wanedit-hostile-{}.png", std::process::id()));
    std::fs::write(&image, vec![0u8; 16 << 20]).unwrap();
    let (clip, took) = edit_with(
        &backend(&mock, pacing()),
        window(Some(image.clone()), JobReporter::discard()),
    );
    std::fs::remove_file(&image).unwrap();
    assert_eq!(clip.unwrap().len(), 50);
    assert_eq!(mock.count(Route::Upload), 2, "each upload went once");
    assert!(
        took > Duration::from_secs(1),
        "the upload was slow: {took:?}"
    );
}

#[test]
fn a_stalled_cog_cancel_frees_the_server_and_gives_up() {
    let mock = Mock::start(Kind::Cog);
    mock.never_finish.store(true, Ordering::SeqCst);
    for _ in 0..6 {
        mock.fault(Route::Cancel, Fault::stall(Duration::from_secs(30)));
    }
    let pacing = Pacing {
        request_timeout: Duration::from_secs(1),
        cancel_deadline: Duration::from_millis(1500),
        ..pacing()
    };
    let backend = backend(&mock, pacing);
    // The edit is dropped while the prediction runs: its cancel stalls.
    let first = backend.edit(window(None, JobReporter::discard()));
    let dropped =
        runtime().block_on(async { tokio::time::timeout(Duration::from_secs(1), first).await });
    assert!(dropped.is_err(), "the prediction never ends");
    let ended = Instant::now();
    mock.never_finish.store(false, Ordering::SeqCst);
    let (clip, _) = edit(&backend);
    assert_eq!(clip.unwrap().len(), 50);
    let creates: Vec<Instant> = mock
        .seen()
        .into_iter()
        .filter(|s| s.route == Route::Create)
        .map(|s| s.at)
        .collect();
    // The next window took the server at once, while the cancel still stalled.
    assert!(creates.len() >= 2);
    let waited = creates[1] - ended;
    assert!(waited < Duration::from_millis(1500), "{waited:?}");
    // The cancel gave up after its deadline: a try or two, not six.
    std::thread::sleep(Duration::from_secs(3));
    let cancels = mock.count(Route::Cancel);
    assert!((1..=2).contains(&cancels), "{cancels} cancels");
}
