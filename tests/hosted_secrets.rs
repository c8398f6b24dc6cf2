//! Secrets never show: not in GStreamer's log at its most verbose (GST_DEBUG=*:9), not in
//! bus messages, not in error texts, not in a property read, whether they work or not.
//! Secrets are the API key and the password of an endpoint URL (`http://user:password@host`).
//!
//! Secrets are set as properties, not in a pipeline description: GStreamer's own parser
//! logs descriptions whole (at INFO), which is why docs/hosted.md tells gst-launch users to
//! give the key through the environment.

#[path = "support/hosted/mod.rs"]
mod hosted;

use std::sync::{Arc, Mutex, OnceLock};

use base64::Engine;
use gst::prelude::*;
use hosted::pipeline::{Outcome, invert, run_configured};
use hosted::server::KEY;
use hosted::{Kind, Mock, Route};

/// What GST_DEBUG=*:9 prints, kept in memory, for every test of this file.
fn verbose_log() -> Arc<Mutex<String>> {
    static LOG: OnceLock<Arc<Mutex<String>>> = OnceLock::new();
    LOG.get_or_init(|| {
        gst::init().unwrap();
        let log = Arc::new(Mutex::new(String::new()));
        gst::log::remove_default_log_function();
        gst::log::set_default_threshold(gst::DebugLevel::Memdump);
        gst::log::set_active(true);
        let sink = log.clone();
        gst::log::add_log_function(
            move |category, level, file, function, line, object, message| {
                let object = object.map(|o| o.to_string()).unwrap_or_default();
                let text = message.get().map(|m| m.to_string()).unwrap_or_default();
                sink.lock().unwrap().push_str(&format!(
                    "{level:?} {} {file}:{line}:{function}:<{object}> {text}\n",
                    category.name()
                ));
            },
        );
        log
    })
    .clone()
}

/// Everything the application sees of the bus messages: their structures, and the texts
/// of errors and warnings.
fn message_texts(outcome: &Outcome) -> String {
    let mut seen = String::new();
    for message in &outcome.messages {
        seen.push_str(&format!("{message:?}\n"));
        if let Some(s) = message.structure() {
            seen.push_str(&format!("{s}\n"));
        }
        match message.view() {
            gst::MessageView::Error(e) => {
                seen.push_str(&format!("{} {:?}\n", e.error(), e.debug()))
            }
            gst::MessageView::Warning(w) => {
                seen.push_str(&format!("{} {:?}\n", w.error(), w.debug()))
            }
            _ => {}
        }
    }
    seen
}

fn assert_not_in_log(log: &Mutex<String>, secret: &str) {
    let log = log.lock().unwrap();
    let leaks: Vec<&str> = log.lines().filter(|l| l.contains(secret)).take(3).collect();
    assert!(leaks.is_empty(), "{secret} is in the log: {leaks:#?}");
}

#[test]
fn the_api_key_never_appears_in_logs_messages_or_errors() {
    let log = verbose_log();
    let wrong = "wrong-key-not-to-be-shown-4242";
    let mut seen_text = String::new();
    for key in [KEY, wrong] {
        let mock = Mock::start(Kind::Replicate);
        let outcome = run_configured(
            &format!(
                "backend=replicate endpoint={} window-frames=33 overlap-frames=8 job-timeout=60",
                mock.url
            ),
            33,
            |edit| edit.set_property("api-key", key),
        );
        if key == KEY {
            outcome.assert_frames(33, invert);
        } else {
            let error = outcome.error().expect("a refused key fails the pipeline");
            assert!(error.contains("REPLICATE_API_TOKEN"), "{error}");
        }
        // The key did reach the server: the search below looks at the right pipeline.
        assert!(mock.seen().iter().any(
            |s| s.route != Route::Download && s.authorization == Some(format!("Bearer {key}"))
        ));
        seen_text.push_str(&message_texts(&outcome));
    }

    {
        let log = log.lock().unwrap();
        assert!(log.lines().count() > 10_000, "the log is the verbose one");
        assert!(log.contains("wanedit"), "the element logged");
    }
    assert!(seen_text.contains("wanedit-window"));
    for key in [KEY, wrong] {
        assert_not_in_log(&log, key);
        assert!(!seen_text.contains(key), "the key is in a message");
    }
}

/// The password of `http://user:password@host` is sent to the server (basic auth is why it
/// is written there) and shown nowhere: not in the log, the bus, an error, or the endpoint
/// as read back.
#[test]
fn an_endpoint_password_is_sent_but_never_shown() {
    let log = verbose_log();
    const PASSWORD: &str = "endpoint-pass-not-to-be-shown-7731";
    let mock = Mock::start(Kind::Cog);
    let with_password = |url: &str| url.replacen("://", &format!("://wanuser:{PASSWORD}@"), 1);
    let mut read_back = Vec::new();
    let mut run = |endpoint: String, properties: &str| {
        let outcome = run_configured(
            &format!("backend=cog window-frames=33 overlap-frames=8 window-retries=0 {properties}"),
            33,
            |edit| {
                edit.set_property("endpoint", &endpoint);
                read_back.push(
                    edit.property::<Option<String>>("endpoint")
                        .unwrap_or_default(),
                );
            },
        );
        message_texts(&outcome)
    };

    // A fleet: the server that answers, and one that is gone (its error names it).
    let good = with_password(&mock.url);
    let texts = run(good.clone(), "");
    assert!(texts.contains("wanedit-window"), "{texts}");
    let basic = base64::engine::general_purpose::STANDARD.encode(format!("wanuser:{PASSWORD}"));
    assert!(
        mock.seen()
            .iter()
            .filter(|s| s.route == Route::Create)
            .all(|s| s.authorization == Some(format!("Basic {basic}"))),
        "the password reached the server: {:?}",
        mock.seen()
            .iter()
            .map(|s| &s.authorization)
            .collect::<Vec<_>>()
    );
    assert!(mock.count(Route::Create) >= 1);

    let gone = with_password("http://127.0.0.1:1");
    let mut all = texts;
    let texts = run(gone, "");
    assert!(texts.contains("every Cog server is down"), "{texts}");
    assert!(
        texts.contains("127.0.0.1:1"),
        "the error says which server: {texts}"
    );
    all.push_str(&texts);

    // Not a URL at all: the error quotes what was given, less the password.
    let texts = run(with_password("http://127.0.0.1:port"), "");
    assert!(texts.contains("endpoint"), "{texts}");
    all.push_str(&texts);
    let texts = run(format!("{good},{}", with_password("ftp://127.0.0.1")), "");
    assert!(texts.contains("not an http(s) URL"), "{texts}");
    all.push_str(&texts);

    let leaks: Vec<&str> = all.lines().filter(|l| l.contains(PASSWORD)).collect();
    assert!(leaks.is_empty(), "the password is in messages: {leaks:#?}");
    assert_not_in_log(&log, PASSWORD);
    for endpoint in &read_back {
        assert!(!endpoint.contains(PASSWORD), "read back: {endpoint}");
        assert!(endpoint.contains("127.0.0.1"), "read back: {endpoint}");
    }
}

/// A key with the newline of the file it came from works with Cog as with every provider.
#[test]
fn the_cog_key_is_trimmed_like_the_others() {
    let mock = Mock::start(Kind::Cog);
    let outcome = run_configured(
        &format!(
            "backend=cog endpoint={} window-frames=33 overlap-frames=8",
            mock.url
        ),
        33,
        |edit| edit.set_property("api-key", format!(" {KEY}\n")),
    );
    outcome.assert_frames(33, invert);
    assert!(
        mock.seen()
            .iter()
            .all(|s| s.authorization == Some(format!("Bearer {KEY}"))),
        "{:?}",
        mock.seen()
            .iter()
            .map(|s| &s.authorization)
            .collect::<Vec<_>>()
    );
}

/// A key (or a password) bound for another machine over plain http is refused before any
/// request, with an error that says how to allow it.
#[test]
fn credentials_are_not_sent_over_plain_http_to_another_machine() {
    for (backend, endpoint) in [
        ("cog", "http://gpu1.invalid:5000"),
        ("replicate", "http://proxy.invalid:8080"),
    ] {
        let outcome = run_configured(
            &format!(
                "backend={backend} endpoint={endpoint} window-frames=33 overlap-frames=8 \
                 window-retries=0 job-timeout=10"
            ),
            33,
            |edit| edit.set_property("api-key", KEY),
        );
        let error = outcome.error().expect("the key is refused");
        assert!(error.contains("plain http"), "{error}");
        assert!(
            error.contains("gpu1.invalid") || error.contains("proxy.invalid"),
            "{error}"
        );
        assert!(error.contains("allow-insecure-http=true"), "{error}");
        assert!(!error.contains(KEY), "{error}");
        assert!(outcome.frames.is_empty());
    }
    // Allowed, the key goes: the element gets as far as asking the server.
    let outcome = run_configured(
        "backend=cog endpoint=http://gpu1.invalid:5000 allow-insecure-http=true \
         window-frames=33 overlap-frames=8 window-retries=0",
        33,
        |edit| edit.set_property("api-key", KEY),
    );
    let error = outcome.error().expect("gpu1.invalid does not exist");
    assert!(error.contains("every Cog server is down"), "{error}");
}
