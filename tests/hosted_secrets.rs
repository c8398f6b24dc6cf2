//! The API key never shows: not in GStreamer's log at its most verbose (GST_DEBUG=*:9),
//! not in bus messages, not in error texts, whether the key works or not.
//!
//! The key is set as a property, not in a pipeline description: GStreamer's own parser
//! logs descriptions whole (at INFO), which is why docs/hosted.md tells gst-launch users to
//! give the key through the environment.

#[path = "support/hosted/mod.rs"]
mod hosted;

use std::sync::{Arc, Mutex};

use gst::prelude::*;
use hosted::pipeline::run_configured;
use hosted::server::KEY;
use hosted::{Kind, Mock, Route};

#[test]
fn the_api_key_never_appears_in_logs_messages_or_errors() {
    gst::init().unwrap();
    // What GST_DEBUG=*:9 prints, kept in memory.
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
            outcome.assert_frames(33, hosted::pipeline::invert);
        } else {
            let error = outcome.error().expect("a refused key fails the pipeline");
            assert!(error.contains("REPLICATE_API_TOKEN"), "{error}");
        }
        // The key did reach the server: the search below looks at the right pipeline.
        assert!(mock.seen().iter().any(
            |s| s.route != Route::Download && s.authorization == Some(format!("Bearer {key}"))
        ));
        for message in &outcome.messages {
            seen_text.push_str(&format!("{message:?}\n"));
            if let Some(s) = message.structure() {
                seen_text.push_str(&format!("{s}\n"));
            }
            match message.view() {
                gst::MessageView::Error(e) => {
                    seen_text.push_str(&format!("{} {:?}\n", e.error(), e.debug()))
                }
                gst::MessageView::Warning(w) => {
                    seen_text.push_str(&format!("{} {:?}\n", w.error(), w.debug()))
                }
                _ => {}
            }
        }
    }
    gst::log::set_default_threshold(gst::DebugLevel::None);
    let log = log.lock().unwrap().clone();

    assert!(log.lines().count() > 10_000, "the log is the verbose one");
    assert!(log.contains("wanedit"), "the element logged");
    assert!(seen_text.contains("wanedit-window"));
    for key in [KEY, wrong] {
        let leaks: Vec<&str> = log.lines().filter(|l| l.contains(key)).take(3).collect();
        assert!(leaks.is_empty(), "the key is in the log: {leaks:#?}");
        assert!(!seen_text.contains(key), "the key is in a message");
    }
}
