//! What property values GObject refuses, and the properties reading as a manual in
//! gst-inspect-1.0.

mod support;

use std::ffi::CString;
use std::panic::AssertUnwindSafe;

use gst::prelude::*;
use support::*;

/// `element` in a pipeline going to PAUSED: the error it posts, if any.
fn start(element: &gstwanedit::WanEdit) -> Option<String> {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("videotestsrc").build().unwrap();
    let sink = gst::ElementFactory::make("fakesink").build().unwrap();
    pipeline
        .add_many([&src, element.upcast_ref(), &sink])
        .unwrap();
    gst::Element::link_many([&src, element.upcast_ref(), &sink]).unwrap();
    let started = pipeline.set_state(gst::State::Paused);
    let bus = pipeline.bus().unwrap();
    let error = std::iter::from_fn(|| bus.pop()).find_map(|m| match m.view() {
        gst::MessageView::Error(e) => Some(e.error().to_string()),
        _ => None,
    });
    assert_eq!(started.is_err(), error.is_some(), "{error:?}");
    pipeline.set_state(gst::State::Null).unwrap();
    pipeline.remove(element).unwrap();
    error
}

/// NaN never reaches the element: GLib's range check counts it as out of range (NaN is not
/// equal to itself once clamped), so `guidance-scale=nan` in gst-launch is refused with
/// GLib's warning naming the property, and glib-rs's `set_property` panics in the
/// application; either way the property keeps its value. The element relies on this: it has no check of its own.
#[test]
fn a_value_that_is_not_a_number_is_refused_and_the_property_keeps_its_value() {
    for (property, valid) in [
        ("guidance-scale", 5.0),
        ("strength", 0.5),
        ("flow-shift", 3.0),
        ("anchor-strength", 0.25),
    ] {
        let e = element(Editor::identity(), 5, 1);
        e.set_property(property, valid);
        let name = CString::new(property).unwrap();
        // What gst-launch does with `property=nan`.
        unsafe {
            gst::ffi::gst_util_set_object_arg(e.as_ptr().cast(), name.as_ptr(), c"nan".as_ptr());
        }
        assert_eq!(e.property::<f64>(property), valid, "{property}");
        let from_rust = std::panic::catch_unwind(AssertUnwindSafe(|| {
            e.set_property(property, f64::NAN);
        }));
        assert!(from_rust.is_err(), "{property}");
        assert_eq!(e.property::<f64>(property), valid, "{property}");
        assert_eq!(start(&e), None, "{property}");
    }
}

#[test]
fn every_string_property_says_what_unset_means() {
    init();
    let e = gst::ElementFactory::make("wanedit").build().unwrap();
    for p in e.list_properties() {
        let blurb = p.blurb().unwrap_or_default().to_owned();
        assert!(blurb.len() > 10, "{}: {blurb}", p.name());
        if p.owner_type() == e.type_() && p.value_type() == String::static_type() {
            assert!(
                blurb.contains("unset:"),
                "{} does not say what unset means: {blurb}",
                p.name()
            );
        }
    }
    let factory = gst::ElementFactory::find("wanedit").unwrap();
    let author = factory.metadata(gst::ELEMENT_METADATA_AUTHOR).unwrap();
    assert!(!author.contains('@'), "{author}");
}
