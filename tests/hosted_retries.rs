//! Riding through transient faults: every status that says "try again", a reset
//! connection, a stalled answer and a truncated body, on each request that may be sent
//! again, once and three times in a row; windows submitted again after a failure that may
//! pass; a Cog fleet losing a server mid-stream. In every case the stream must come out
//! whole: every frame once, edited, at its time, with its timecode meta.

#[path = "support/hosted/mod.rs"]
mod hosted;

use std::sync::Arc;
use std::time::{Duration, Instant};

use gst::prelude::*;
use gstwanedit::backend::hosted::{Limits, Pacing};
use gstwanedit::backend::{Backend, BackendConfig, BackendKind, EditParams};
use hosted::pipeline::{Outcome, colour, invert, run_configured};
use hosted::server::KEY;
use hosted::{Fault, Kind, Mock, Route};

/// One window (W=33): faults in a row reach the same request of the same job.
const FRAMES: u64 = 33;

/// Short pacing, so that a stall costs half a second and a retry a few milliseconds.
const PACING: Pacing = Pacing {
    request_timeout: Duration::from_millis(500),
    first_retry: Duration::from_millis(20),
    ..Pacing::DEFAULT
};

/// The faults every request that may be sent again must ride through.
fn transient_faults() -> Vec<(&'static str, Fault)> {
    let mut faults: Vec<(&'static str, Fault)> = [408, 425, 429, 500, 502, 503, 504]
        .into_iter()
        .map(|status| {
            let name: &'static str = status.to_string().leak();
            (name, Fault::status(status))
        })
        .collect();
    faults.push(("reset", Fault::reset()));
    faults.push(("stall", Fault::stall(Duration::from_secs(1))));
    faults.push(("truncated", Fault::truncated()));
    faults
}

/// A hosted backend for `mocks` (one server, or a Cog fleet) with short pacing.
fn backend(kind: Kind, urls: &[&str]) -> Arc<dyn Backend> {
    let kind = kind.backend();
    let config = BackendConfig {
        kind,
        model: (kind == BackendKind::Together).then(|| "Wan-AI/Wan2.2-VideoEdit".to_owned()),
        endpoint: Some(urls.join(",")),
        api_key: (kind != BackendKind::Cog).then(|| KEY.to_owned()),
        job_timeout: Duration::from_secs(120),
        params: EditParams {
            prompt: "invert it".into(),
            ..Default::default()
        },
        ..Default::default()
    };
    let limits = Limits {
        pacing: PACING,
        ..Limits::default()
    };
    gstwanedit::backend::hosted::create(kind, &config, limits).unwrap()
}

/// Runs `frames` frames through `wanedit` with `backend` and `properties`.
fn stream(backend: Arc<dyn Backend>, properties: &str, frames: u64) -> Outcome {
    run_configured(
        &format!("window-frames=33 overlap-frames=8 job-timeout=120 {properties}"),
        frames,
        move |element| {
            element
                .downcast_ref::<gstwanedit::WanEdit>()
                .unwrap()
                .set_shared_backend(backend);
        },
    )
}

/// Each transient fault, once and three times in a row, on `route` of a `kind` server:
/// the stream comes out whole, the faulted request was sent again until it got through,
/// and the job was created once.
fn rides_through(kind: Kind, route: Route, requests_per_window: usize) {
    for (name, fault) in transient_faults() {
        for times in [1, 3] {
            let mock = Mock::start(kind);
            for _ in 0..times {
                mock.fault(route, fault.clone());
            }
            let outcome = stream(backend(kind, &[&mock.url]), "", FRAMES);
            let case = format!("{kind:?} {route:?}: {name} x{times}");
            assert_eq!(outcome.error(), None, "{case}");
            outcome.assert_frames(FRAMES, invert);
            assert_eq!(mock.faults_left(), 0, "{case}: every fault was served");
            if route != Route::Poll {
                assert_eq!(
                    mock.count(route),
                    requests_per_window + times,
                    "{case}: sent again once per fault"
                );
            }
            assert_eq!(mock.count(Route::Create), 1, "{case}: one job, never twice");
            assert!(
                outcome
                    .attempts()
                    .iter()
                    .all(|(_, _, attempt)| *attempt == 1),
                "{case}: the requests were retried, not the window"
            );
        }
    }
}

#[test]
fn replicate_uploads_ride_through_transient_faults() {
    rides_through(Kind::Replicate, Route::Upload, 1);
}

#[test]
fn replicate_polls_ride_through_transient_faults() {
    rides_through(Kind::Replicate, Route::Poll, 0);
}

#[test]
fn replicate_downloads_ride_through_transient_faults() {
    rides_through(Kind::Replicate, Route::Download, 1);
}

#[test]
fn fal_uploads_ride_through_transient_faults() {
    // The storage token, then the file.
    rides_through(Kind::Fal, Route::Upload, 2);
}

#[test]
fn fal_polls_ride_through_transient_faults() {
    rides_through(Kind::Fal, Route::Poll, 0);
}

#[test]
fn fal_results_ride_through_transient_faults() {
    rides_through(Kind::Fal, Route::Result, 1);
}

#[test]
fn fal_downloads_ride_through_transient_faults() {
    rides_through(Kind::Fal, Route::Download, 1);
}

#[test]
fn cog_health_checks_ride_through_transient_faults() {
    rides_through(Kind::Cog, Route::Health, 1);
}

#[test]
fn retry_after_is_honoured() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(
        Route::Poll,
        Fault::status(429).header("retry-after-ms", "400"),
    );
    mock.fault(
        Route::Download,
        Fault::status(503).header("retry-after", "1"),
    );
    let outcome = stream(backend(Kind::Replicate, &[&mock.url]), "", FRAMES);
    outcome.assert_frames(FRAMES, invert);
    let gap_after_first = |route: Route| {
        let times: Vec<Instant> = mock
            .seen()
            .iter()
            .filter(|s| s.route == route)
            .map(|s| s.at)
            .collect();
        times[1] - times[0]
    };
    assert!(gap_after_first(Route::Poll) >= Duration::from_millis(400));
    assert!(gap_after_first(Route::Download) >= Duration::from_secs(1));
}

#[test]
fn a_create_is_sent_again_only_when_it_was_refused_with_429() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(
        Route::Create,
        Fault::status(429).header("retry-after-ms", "50"),
    );
    let outcome = stream(backend(Kind::Replicate, &[&mock.url]), "", FRAMES);
    outcome.assert_frames(FRAMES, invert);
    assert_eq!(mock.count(Route::Create), 2);

    // A 503 on a create may have started a job: the request is not sent again; the window
    // is, as a whole (window-retries), and says so.
    let mock = Mock::start(Kind::Replicate);
    mock.fault(Route::Create, Fault::status(503));
    let outcome = stream(backend(Kind::Replicate, &[&mock.url]), "", FRAMES);
    outcome.assert_frames(FRAMES, invert);
    assert_eq!(mock.count(Route::Create), 2);
    assert_eq!(
        mock.count(Route::Upload),
        2,
        "the retried window is sent again"
    );
    let retrying = outcome.window_errors("retrying");
    assert_eq!(retrying.len(), 1);
    assert!(retrying[0].contains("HTTP 503"), "{retrying:?}");
}

/// A poll answer that says the prediction failed with `error`.
fn failed_prediction(error: &str) -> Fault {
    Fault::new(
        200,
        serde_json::json!({"id": "x", "status": "failed", "error": error, "output": null})
            .to_string(),
    )
}

#[test]
fn a_window_that_fails_twice_succeeds_on_its_third_attempt() {
    let mock = Mock::start(Kind::Replicate);
    for _ in 0..2 {
        mock.fault(Route::Poll, failed_prediction("CUDA out of memory"));
    }
    let outcome = stream(
        backend(Kind::Replicate, &[&mock.url]),
        "window-retries=2",
        FRAMES,
    );
    outcome.assert_frames(FRAMES, invert);
    assert_eq!(mock.count(Route::Create), 3);
    let states: Vec<(String, u32)> = outcome
        .attempts()
        .into_iter()
        .filter(|(_, state, _)| state != "running")
        .map(|(_, state, attempt)| (state, attempt))
        .collect();
    let expected: Vec<(String, u32)> = [
        ("queued", 1),
        ("submitted", 1),
        ("retrying", 1),
        ("submitted", 2),
        ("retrying", 2),
        ("submitted", 3),
        ("done", 3),
    ]
    .into_iter()
    .map(|(s, a)| (s.to_owned(), a))
    .collect();
    assert_eq!(states, expected);
    assert!(
        outcome
            .window_errors("retrying")
            .iter()
            .all(|e| e.contains("CUDA out of memory"))
    );
}

#[test]
fn a_window_that_fails_three_times_goes_to_on_error() {
    let mock = Mock::start(Kind::Replicate);
    for _ in 0..3 {
        mock.fault(Route::Poll, failed_prediction("worker lost"));
    }
    let outcome = stream(
        backend(Kind::Replicate, &[&mock.url]),
        "window-retries=2 on-error=passthrough",
        FRAMES,
    );
    // The original frames stand in for the edit.
    outcome.assert_frames(FRAMES, |rgb| rgb);
    assert_eq!(mock.count(Route::Create), 3);
    let last = outcome.attempts().into_iter().last().unwrap();
    assert_eq!(last, (0, "failed".to_owned(), 3));
    let warning = outcome
        .messages
        .iter()
        .find_map(|m| match m.view() {
            gst::MessageView::Warning(w) => Some(w.error().to_string()),
            _ => None,
        })
        .unwrap();
    assert!(warning.contains("3 attempts"), "{warning}");
    assert!(warning.contains("worker lost"), "{warning}");
    assert_eq!(colour(0), outcome.frames[0].1);
}

#[test]
fn a_content_policy_refusal_is_not_retried() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(
        Route::Poll,
        failed_prediction(
            "NSFW content detected. Try running it again, or try a different prompt.",
        ),
    );
    let outcome = stream(
        backend(Kind::Replicate, &[&mock.url]),
        "window-retries=2",
        FRAMES,
    );
    let error = outcome.error().expect("on-error=fail stops the stream");
    assert!(error.contains("NSFW content detected"), "{error}");
    assert_eq!(mock.count(Route::Create), 1);
    assert!(outcome.window_errors("retrying").is_empty());
    assert!(
        outcome.frames.is_empty(),
        "nothing of a failed stream leaves"
    );
}

#[test]
fn window_retries_0_sends_a_failed_window_to_on_error_at_once() {
    let mock = Mock::start(Kind::Replicate);
    mock.fault(Route::Poll, failed_prediction("worker lost"));
    let outcome = stream(
        backend(Kind::Replicate, &[&mock.url]),
        "window-retries=0 on-error=passthrough",
        FRAMES,
    );
    outcome.assert_frames(FRAMES, |rgb| rgb);
    assert_eq!(mock.count(Route::Create), 1);
}

/// 4 windows (W=33, O=8): [0,33), [25,58), [50,83), and at EOS [75,108).
const FLEET_FRAMES: u64 = 108;

#[test]
fn a_cog_fleet_finishes_on_one_server_when_the_other_is_killed_mid_stream() {
    let (a, b) = (Mock::start(Kind::Cog), Mock::start(Kind::Cog));
    for mock in [&a, &b] {
        *mock.job_time.lock().unwrap() = Duration::from_millis(800);
    }
    let killer = {
        let b = b.clone();
        std::thread::spawn(move || {
            // Kill b while its first prediction runs.
            let deadline = Instant::now() + Duration::from_secs(60);
            while b.count(Route::Create) == 0 && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(10));
            }
            std::thread::sleep(Duration::from_millis(200));
            b.kill();
        })
    };
    let outcome = stream(
        backend(Kind::Cog, &[&a.url, &b.url]),
        "max-in-flight=2",
        FLEET_FRAMES,
    );
    killer.join().unwrap();
    outcome.assert_frames(FLEET_FRAMES, invert);
    assert_eq!(b.count(Route::Create), 1, "b got one prediction, then died");
    assert_eq!(
        a.count(Route::Create),
        4,
        "a edited every window in the end"
    );
    let retrying = outcome.window_errors("retrying");
    assert_eq!(retrying.len(), 1, "{retrying:?}");
}

#[test]
fn a_cog_server_that_fails_its_health_check_gets_no_window() {
    let (a, b) = (Mock::start(Kind::Cog), Mock::start(Kind::Cog));
    *b.health.lock().unwrap() = "SETUP_FAILED";
    let outcome = stream(
        backend(Kind::Cog, &[&a.url, &b.url]),
        "max-in-flight=2",
        FLEET_FRAMES,
    );
    outcome.assert_frames(FLEET_FRAMES, invert);
    assert_eq!(b.count(Route::Create), 0);
    assert_eq!(a.count(Route::Create), 4);
    assert!(b.count(Route::Health) >= 1);
}

#[test]
fn a_cog_fleet_with_every_server_down_names_each_and_why() {
    let (a, b) = (Mock::start(Kind::Cog), Mock::start(Kind::Cog));
    *a.health.lock().unwrap() = "STARTING";
    b.kill();
    let outcome = stream(
        backend(Kind::Cog, &[&a.url, &b.url]),
        "window-retries=1",
        FRAMES,
    );
    let error = outcome.error().expect("no server can edit");
    assert!(error.contains("every Cog server is down"), "{error}");
    assert!(
        error.contains(&format!("{}/ (health check says STARTING)", a.url)),
        "{error}"
    );
    assert!(error.contains(&format!("{}/ (", b.url)), "{error}");
    assert!(error.contains("2 attempts"), "{error}");
    assert_eq!(a.count(Route::Create) + b.count(Route::Create), 0);
}
