//! Every hosted provider, end to end: a pipeline edits a stream through a loopback server
//! that speaks the provider's protocol and returns clips at another rate, frame count and
//! size than it was sent. The element still outputs exactly the input's frames and times.

#[path = "support/hosted/mod.rs"]
mod hosted;

use std::sync::Arc;

use hosted::pipeline::{Outcome, invert, run};
use hosted::server::KEY;
use hosted::{Kind, Mock, Route};
use serde_json::Value;

/// 50 frames with W=33 and O=8: a window at 0 and, at EOS, a last one on [17, 50).
const FRAMES: u64 = 50;

fn properties(mock: &Mock) -> String {
    format!(
        "backend={} endpoint={} api-key={KEY} window-frames=33 overlap-frames=8 \
         job-timeout=120 seed=7",
        mock.kind.backend().nick(),
        mock.url
    )
}

/// Edits FRAMES frames through a `kind` server, with `extra` properties, and checks that
/// every frame came out once, edited, at its time.
fn edited(kind: Kind, extra: &str) -> (Arc<Mock>, Outcome) {
    let mock = Mock::start(kind);
    let outcome = run(&format!("{} {extra}", properties(&mock)), FRAMES);
    outcome.assert_frames(FRAMES, invert);
    (mock, outcome)
}

fn jobs_reported(outcome: &Outcome) -> Vec<String> {
    let mut ids: Vec<String> = outcome
        .windows()
        .into_iter()
        .filter(|(_, state, id)| state == "submitted" && !id.is_empty())
        .map(|(_, _, id)| id)
        .collect();
    ids.sort();
    ids.dedup();
    ids
}

#[test]
fn replicate_uploads_creates_polls_and_downloads() {
    let (mock, outcome) = edited(Kind::Replicate, "");

    let seen = mock.seen();
    assert!(
        seen.iter()
            .filter(|s| s.route != Route::Download)
            .all(|s| s.authorization.as_deref() == Some(&format!("Bearer {KEY}"))),
        "every API call carries the Bearer token"
    );
    assert!(
        seen.iter()
            .filter(|s| s.route == Route::Download)
            .all(|s| s.authorization.is_none()),
        "downloads go without the key"
    );
    let creates: Vec<_> = seen.iter().filter(|s| s.route == Route::Create).collect();
    assert_eq!(creates.len(), 2);
    for create in &creates {
        assert_eq!(
            create.path,
            "/v1/models/wan-video/wan-2.7-videoedit/predictions"
        );
        let input = &create.body["input"];
        assert!(
            input["video"]
                .as_str()
                .unwrap()
                .starts_with(&format!("{}/files/", mock.url))
        );
        assert_eq!(input["prompt"], "invert it");
        assert_eq!(input["seed"], 7);
        assert_eq!(input["resolution"], "720p");
        let keys: Vec<&String> = input.as_object().unwrap().keys().collect();
        assert_eq!(keys.len(), 4, "nothing the user did not set: {keys:?}");
    }
    assert_eq!(mock.count(Route::Upload), 2);
    assert_eq!(mock.count(Route::Cancel), 0);
    let jobs = jobs_reported(&outcome);
    assert_eq!(jobs.len(), 2, "{jobs:?}");
    assert!(
        jobs.iter().all(|id| id.starts_with("job")),
        "the provider's ids: {jobs:?}"
    );
    let progress: Vec<f64> = outcome
        .messages
        .iter()
        .filter_map(|m| m.structure()?.get::<f64>("progress").ok())
        .filter(|p| *p >= 0.0)
        .collect();
    assert!(!progress.is_empty(), "tqdm logs give progress");
}

#[test]
fn replicate_pinned_versions_use_the_version_form() {
    let (mock, _) = edited(Kind::Replicate, "model=owner/name:5c7d5dc6");
    for create in mock.seen().iter().filter(|s| s.route == Route::Create) {
        assert_eq!(create.path, "/v1/predictions");
        assert_eq!(create.body["version"], "5c7d5dc6");
    }
}

#[test]
fn fal_uploads_to_its_cdn_and_follows_the_urls_the_queue_returns() {
    let (mock, _) = edited(Kind::Fal, "");

    let seen = mock.seen();
    let creates: Vec<_> = seen.iter().filter(|s| s.route == Route::Create).collect();
    assert_eq!(creates.len(), 2);
    for create in &creates {
        assert_eq!(create.path, "/fal-ai/wan/v2.7/edit-video");
        assert_eq!(
            create.authorization.as_deref(),
            Some(&*format!("Key {KEY}"))
        );
        // The input itself, not wrapped.
        assert!(
            create.body["video_url"]
                .as_str()
                .unwrap()
                .starts_with(&mock.url)
        );
        assert_eq!(create.body["prompt"], "invert it");
    }
    let polls: Vec<_> = seen.iter().filter(|s| s.route == Route::Poll).collect();
    assert!(
        polls
            .iter()
            .all(|p| p.path.starts_with("/fal-ai/wan/requests/") && p.query == "logs=1")
    );
    assert_eq!(mock.count(Route::Result), 2);
    let cdn: Vec<_> = seen
        .iter()
        .filter(|s| s.path == "/cdn/files/upload")
        .collect();
    assert_eq!(cdn.len(), 2);
    assert!(
        cdn.iter()
            .all(|s| s.authorization.as_deref() == Some("Bearer cdn-token-1")),
        "the CDN gets the storage token, not the key"
    );
}

#[test]
fn wavespeed_uploads_through_a_presigned_put() {
    let (mock, _) = edited(Kind::Wavespeed, "");

    let seen = mock.seen();
    assert_eq!(
        seen.iter()
            .filter(|s| s.path.starts_with("/presigned/"))
            .count(),
        2
    );
    for create in seen.iter().filter(|s| s.route == Route::Create) {
        assert_eq!(create.path, "/api/v3/alibaba/wan-2.7/video-edit");
        assert!(create.body["video"].as_str().unwrap().contains("/files/up"));
    }
}

#[test]
fn together_sends_the_clip_inline_under_media() {
    let (mock, _) = edited(
        Kind::Together,
        "model=Wan-AI/Wan2.2-VideoEdit negative-prompt=blurry num-inference-steps=20",
    );
    let inputs = mock.inputs();
    assert_eq!(inputs.len(), 2);
    for body in &inputs {
        assert_eq!(body["model"], "Wan-AI/Wan2.2-VideoEdit");
        assert_eq!(body["negative_prompt"], "blurry");
        assert_eq!(body["steps"], 20);
        assert_eq!(
            (body["width"].as_u64(), body["height"].as_u64()),
            (Some(832), Some(480))
        );
        let video = body
            .pointer("/media/source_video/video")
            .and_then(Value::as_str)
            .unwrap();
        assert!(video.starts_with("data:video/mp4;base64,"));
        assert!(body.get("video").is_none());
    }
}

#[test]
fn cog_fleets_spread_windows_over_their_servers() {
    let a = Mock::start(Kind::Cog);
    let b = Mock::start(Kind::Cog);
    // 90 frames: windows at 0, 25 and 50, and a last one on [57, 90).
    let outcome = run(
        &format!(
            "backend=cog endpoint={},{} window-frames=33 overlap-frames=8 max-in-flight=4",
            a.url, b.url
        ),
        90,
    );
    outcome.assert_frames(90, invert);
    let (on_a, on_b) = (a.count(Route::Create), b.count(Route::Create));
    assert!(
        on_a >= 1 && on_b >= 1,
        "both servers got windows: {on_a} and {on_b}"
    );
    assert_eq!(a.most_running.load(std::sync::atomic::Ordering::SeqCst), 1);
    assert_eq!(b.most_running.load(std::sync::atomic::Ordering::SeqCst), 1);
    for body in a.inputs().iter().chain(&b.inputs()) {
        assert!(body["id"].as_str().unwrap().starts_with("wanedit-"));
        assert!(
            body.pointer("/input/video")
                .unwrap()
                .as_str()
                .unwrap()
                .starts_with("data:video/mp4")
        );
    }
}

#[test]
fn parameters_the_model_cannot_take_fail_before_data_flows() {
    let mock = Mock::start(Kind::Replicate);
    let outcome = run(&format!("{} strength=0.5", properties(&mock)), FRAMES);
    let error = outcome.error().expect("an error");
    assert!(error.contains("strength"), "{error}");
    assert!(outcome.frames.is_empty());
    assert!(mock.seen().is_empty(), "nothing was sent");
}
