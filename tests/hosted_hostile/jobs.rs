//! Answers that attack the job protocol: ids, URLs, clips and texts a provider hands back.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use gstwanedit::backend::hosted::Limits;
use gstwanedit::backend::{
    Backend, BackendConfig, BackendError, BackendKind, ClipFrame, EditParams, JobReporter,
    JobUpdate,
};

use super::edit_with;
use super::hosted::server::KEY;
use super::hosted::{Kind, Mock, Output, Route, Seen, window};

/// A provider's longest answers quoted in errors are cut to about this (`http::clip`'s 500
/// characters, and the error's own words).
const SHORT: usize = 700;

fn backend(mock: &Mock, job_timeout: u64, reference_image: Option<PathBuf>) -> Arc<dyn Backend> {
    let kind = mock.kind.backend();
    let config = BackendConfig {
        kind,
        model: (kind == BackendKind::Together).then(|| "Wan-AI/Wan2.2-VideoEdit".to_owned()),
        endpoint: Some(mock.url.clone()),
        api_key: Some(KEY.into()),
        job_timeout: Duration::from_secs(job_timeout),
        params: EditParams {
            prompt: "invert it".into(),
            reference_images: reference_image.iter().cloned().collect(),
            ..Default::default()
        },
        ..Default::default()
    };
    gstwanedit::backend::hosted::create(kind, &config, Limits::default()).unwrap()
}

fn edit(backend: &Arc<dyn Backend>) -> Result<Vec<ClipFrame>, BackendError> {
    edit_with(backend, window(None, JobReporter::discard())).0
}

/// Waits (boundedly) until the server has seen `count` requests for `route`.
fn wait_for(mock: &Mock, route: Route, count: usize) -> bool {
    (0..200).any(|_| {
        let seen = mock.count(route) >= count;
        if !seen {
            std::thread::sleep(Duration::from_millis(50));
        }
        seen
    })
}

/// The requests that carried the key.
fn keyed(mock: &Mock) -> Vec<Seen> {
    mock.seen()
        .into_iter()
        .filter(|s| s.authorization.as_deref().is_some_and(|a| a.contains(KEY)))
        .collect()
}

const HOSTILE_ID: &str = "../../v1/files#";
const ESCAPED_ID: &str = "..%2F..%2Fv1%2Ffiles%23";

#[test]
fn a_job_id_holding_a_path_stays_one_segment_of_the_jobs_own_path() {
    for (kind, poll) in [
        (Kind::Replicate, format!("/v1/predictions/{ESCAPED_ID}")),
        (
            Kind::Wavespeed,
            format!("/api/v3/predictions/{ESCAPED_ID}/result"),
        ),
        (Kind::Together, format!("/v2/videos/{ESCAPED_ID}")),
    ] {
        let mock = Mock::start(kind);
        *mock.job_id.lock().unwrap() = Some(HOSTILE_ID.into());
        // The id is the provider's: escaped, it names the job, which then ends as usual.
        let clip = edit(&backend(&mock, 60, None)).unwrap_or_else(|e| panic!("{kind:?}: {e}"));
        assert_eq!(clip.len(), 50, "{kind:?}");
        let polls: Vec<Seen> = mock
            .seen()
            .into_iter()
            .filter(|s| s.method == "GET" && !s.path.starts_with("/outputs/"))
            .collect();
        assert!(!polls.is_empty(), "{kind:?}: no poll");
        for seen in &polls {
            assert_eq!(seen.path, poll, "{kind:?}: polled at another path");
        }
        for seen in keyed(&mock) {
            assert!(
                matches!(seen.route, Route::Upload | Route::Create | Route::Poll),
                "{kind:?}: the key went to {} {}",
                seen.method,
                seen.path
            );
        }
    }
}

#[test]
fn a_hostile_job_id_is_cancelled_at_its_own_path() {
    let mock = Mock::start(Kind::Replicate);
    *mock.job_id.lock().unwrap() = Some(HOSTILE_ID.into());
    mock.never_finish
        .store(true, std::sync::atomic::Ordering::SeqCst);
    let error = edit(&backend(&mock, 2, None)).unwrap_err();
    assert!(matches!(error, BackendError::Timeout(_)), "{error}");
    assert!(wait_for(&mock, Route::Cancel, 1), "the job was cancelled");
    let cancel = mock
        .seen()
        .into_iter()
        .find(|s| s.route == Route::Cancel)
        .unwrap();
    assert_eq!(cancel.path, format!("/v1/predictions/{ESCAPED_ID}/cancel"));
    // Nothing but the upload was sent to the file API.
    for seen in mock.seen() {
        assert!(
            seen.path != "/v1/files" || seen.route == Route::Upload,
            "{} {}",
            seen.method,
            seen.path
        );
    }
}

#[test]
fn a_job_id_that_is_a_dot_segment_is_refused() {
    for kind in [Kind::Replicate, Kind::Wavespeed, Kind::Together] {
        for id in ["..", ".", ""] {
            let mock = Mock::start(kind);
            *mock.job_id.lock().unwrap() = Some(id.into());
            let error = edit(&backend(&mock, 60, None)).unwrap_err().to_string();
            assert!(
                error.contains("cannot name a job"),
                "{kind:?} {id:?}: {error}"
            );
            assert_eq!(mock.count(Route::Poll), 0, "{kind:?} {id:?}");
            assert_eq!(mock.count(Route::Other), 0, "{kind:?} {id:?}");
        }
    }
}

#[test]
fn job_urls_off_the_providers_origin_are_never_followed() {
    for kind in [Kind::Replicate, Kind::Fal, Kind::Wavespeed] {
        let mock = Mock::start(kind);
        // Another port of this machine: another origin, as a private address would be.
        let elsewhere = Mock::start(kind);
        *mock.job_urls_at.lock().unwrap() = Some(elsewhere.url.clone());
        let error = edit(&backend(&mock, 60, None)).unwrap_err();
        let text = error.to_string();
        assert!(
            matches!(error, BackendError::Protocol(_)),
            "{kind:?}: {text}"
        );
        assert!(
            text.contains(&elsewhere.url) && text.contains("not the provider's own"),
            "{kind:?}: {text}"
        );
        // Give a stray request (a cancel sent in the background) time to arrive.
        std::thread::sleep(Duration::from_millis(300));
        assert!(
            elsewhere.seen().is_empty(),
            "{kind:?}: {:?}",
            elsewhere.seen()
        );
        assert_eq!(mock.count(Route::Poll), 0, "{kind:?}");
    }
}

#[test]
fn a_clip_declaring_huge_frames_is_refused_from_its_caps() {
    for kind in [Kind::Replicate, Kind::Cog] {
        let mock = Mock::start(kind);
        *mock.output.lock().unwrap() = Output::Huge;
        let error = edit(&backend(&mock, 60, None)).unwrap_err();
        let text = error.to_string();
        assert!(matches!(error, BackendError::Output(_)), "{kind:?}: {text}");
        assert!(
            text.contains("16000x16000") && text.contains("declares"),
            "{kind:?}: {text}"
        );
    }
}

#[test]
fn long_job_ids_and_failure_texts_are_cut_short() {
    let long_id = "j".repeat(20_000);
    let reason = "CUDA out of memory. ".repeat(10_000);
    for kind in [Kind::Replicate, Kind::Wavespeed, Kind::Together] {
        let mock = Mock::start(kind);
        *mock.job_id.lock().unwrap() = Some(long_id.clone());
        *mock.fail_with.lock().unwrap() = Some(reason.clone());
        let ids = Arc::new(Mutex::new(Vec::new()));
        let reporter = JobReporter::new({
            let ids = ids.clone();
            move |update| {
                if let JobUpdate::Submitted { job_id } = update {
                    ids.lock().unwrap().push(job_id);
                }
            }
        });
        let error = edit_with(&backend(&mock, 60, None), window(None, reporter))
            .0
            .unwrap_err();
        let BackendError::JobFailed { job_id, message } = &error else {
            panic!("{kind:?}: {error}");
        };
        assert!(message.starts_with("CUDA out of memory."), "{kind:?}");
        assert!(message.len() < SHORT, "{kind:?}: {} bytes", message.len());
        assert!(job_id.len() < SHORT, "{kind:?}: {} bytes", job_id.len());
        assert!(error.to_string().len() < 2 * SHORT, "{kind:?}");
        let ids = ids.lock().unwrap();
        assert_eq!(ids.len(), 1, "{kind:?}");
        assert!(
            ids[0].starts_with("jjj") && ids[0].len() < SHORT,
            "{kind:?}"
        );
    }
}

/// An empty directory of this test's own.
fn scratch(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wanedit-jobs-{}-{name}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// A PNG's signature, then `tag` repeated: what the server got tells the files apart.
fn image(tag: u8) -> Vec<u8> {
    [b"\x89PNG\r\n\x1a\n".as_slice(), &[tag; 1000]].concat()
}

fn image_uploads(mock: &Mock) -> Vec<Vec<u8>> {
    mock.uploaded()
        .into_iter()
        .filter(|file| file.starts_with(b"\x89PNG"))
        .collect()
}

#[test]
fn the_reference_image_is_read_once_for_every_window() {
    let dir = scratch("read-once");
    let path = dir.join("ref.png");
    std::fs::write(&path, image(1)).unwrap();
    let mock = Mock::start(Kind::Replicate);
    let backend = backend(&mock, 60, Some(path.clone()));
    for n in 0..3u8 {
        let (clip, _) = edit_with(&backend, window(Some(path.clone()), JobReporter::discard()));
        clip.unwrap();
        // Replaced between windows: the backend keeps what it read first.
        std::fs::write(&path, image(n + 2)).unwrap();
    }
    let uploads = image_uploads(&mock);
    assert_eq!(uploads.len(), 3);
    for upload in uploads {
        assert_eq!(upload, image(1));
    }
}

#[test]
fn a_missing_or_oversized_reference_image_fails_clearly() {
    let dir = scratch("refused");
    let missing = dir.join("missing.png");
    let huge = dir.join("huge.png");
    // Sparse: 64 MiB on paper, nothing on disk.
    std::fs::File::create(&huge)
        .unwrap()
        .set_len(64 << 20)
        .unwrap();
    for (path, why) in [(&missing, "No such file"), (&huge, "MiB")] {
        let mock = Mock::start(Kind::Replicate);
        let backend = backend(&mock, 60, Some(path.clone()));
        let error = edit_with(&backend, window(Some(path.clone()), JobReporter::discard()))
            .0
            .unwrap_err()
            .to_string();
        assert!(
            error.contains("reference-image")
                && error.contains(&path.display().to_string())
                && error.contains(why),
            "{error}"
        );
        assert!(image_uploads(&mock).is_empty(), "{error}");
        assert_eq!(mock.count(Route::Create), 0, "{error}");
    }
}
