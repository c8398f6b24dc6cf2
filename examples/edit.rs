//! Edits a video file with `wanedit` and keeps its audio, with a progress bar.
//!
//!     cargo run --release --example edit -- in.mp4 out.mp4 --prompt "make it snow" \
//!         [--backend replicate] [--keep-format] [--any-wanedit-property value ...]
//!
//! The graph: filesrc ! decodebin, its video through videoconvert ! wanedit ! videoconvert !
//! I420 ! x264enc ! H.264 High, its audio (if any) through audioconvert ! avenc_aac, both
//! into mp4mux ! filesink.
//!
//! The video is written as H.264 High, 4:2:0 8-bit: what browsers and phones play. x264enc
//! encodes whatever raw format it is given (4:4:4 or 10-bit gives a High 4:4:4 or High 10
//! stream most players refuse), so the raw video is converted to I420 before it.
//! `--keep-format` keeps the input's own format instead (10-bit, 4:2:2 or 4:4:4 for a
//! post-production chain that takes them).

use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use gst::prelude::*;
use indicatif::{ProgressBar, ProgressStyle};

struct Args {
    input: String,
    output: String,
    /// Encode the raw format wanedit outputs instead of 4:2:0 8-bit.
    keep_format: bool,
    /// `--name value` pairs: wanedit's properties, set from their string forms.
    properties: Vec<(String, String)>,
}

fn parse_args() -> Result<Args> {
    let mut args = std::env::args().skip(1);
    let mut positional = Vec::new();
    let mut properties = Vec::new();
    let mut keep_format = false;
    while let Some(arg) = args.next() {
        match arg.strip_prefix("--") {
            Some("help") => {
                println!(
                    "usage: edit INPUT OUTPUT --prompt TEXT [--backend NAME] [--keep-format] \
                     [--PROPERTY VALUE ...]\n\
                     PROPERTY is any property of the wanedit element (gst-inspect-1.0 wanedit).\n\
                     The video is written as H.264 High 4:2:0 8-bit (what every player plays); \
                     --keep-format keeps the input's bit depth and chroma instead."
                );
                std::process::exit(0);
            }
            Some("keep-format") => keep_format = true,
            Some(name) => {
                let value = args
                    .next()
                    .with_context(|| format!("--{name} needs a value"))?;
                properties.push((name.to_owned(), value));
            }
            None => positional.push(arg),
        }
    }
    let [input, output] = <[String; 2]>::try_from(positional)
        .map_err(|_| anyhow!("usage: edit INPUT OUTPUT --prompt TEXT [--PROPERTY VALUE ...]"))?;
    if !properties.iter().any(|(name, _)| name == "prompt") {
        bail!("--prompt is required: say what the edit should do");
    }
    Ok(Args {
        input,
        output,
        keep_format,
        properties,
    })
}

fn make(factory: &str) -> Result<gst::Element> {
    gst::ElementFactory::make(factory)
        .build()
        .with_context(|| format!("the GStreamer element {factory} is missing"))
}

fn build(args: &Args) -> Result<gst::Pipeline> {
    let pipeline = gst::Pipeline::new();
    let src = gst::ElementFactory::make("filesrc")
        .property("location", &args.input)
        .build()?;
    let decode = make("decodebin")?;
    let mux = make("mp4mux")?;
    let sink = gst::ElementFactory::make("filesink")
        .property("location", &args.output)
        .build()?;
    pipeline.add_many([&src, &decode, &mux, &sink])?;
    src.link(&decode)?;
    mux.link(&sink)?;

    let edit = make("wanedit")?;
    for (name, value) in &args.properties {
        if edit.find_property(name).is_none() {
            bail!("wanedit has no property {name:?} (see gst-inspect-1.0 wanedit)");
        }
        edit.set_property_from_str(name, value);
    }
    let mut video = vec![make("videoconvert")?, edit];
    video.extend(encoder_chain(args.keep_format)?);
    pipeline.add_many(&video)?;
    gst::Element::link_many(&video)?;
    video.last().unwrap().link(&mux)?;

    let weak = pipeline.downgrade();
    decode.connect_pad_added(move |_, pad| {
        let Some(pipeline) = weak.upgrade() else {
            return;
        };
        let caps = pad.current_caps().unwrap_or_else(|| pad.query_caps(None));
        let Some(kind) = caps.structure(0).map(|s| s.name().to_string()) else {
            return;
        };
        let linked = if kind.starts_with("video/") {
            pad.link(&video[0].static_pad("sink").unwrap()).is_ok()
        } else if kind.starts_with("audio/") {
            link_audio(&pipeline, pad).is_ok()
        } else {
            false
        };
        if !linked {
            eprintln!("skipping a {kind} stream of the input");
        }
    });
    Ok(pipeline)
}

/// From wanedit's raw video to H.264: High 4:2:0 8-bit, or with `keep_format` whatever
/// profile the raw format needs.
fn encoder_chain(keep_format: bool) -> Result<Vec<gst::Element>> {
    let encoder = make("x264enc")?;
    encoder.set_property_from_str("pass", "qual");
    encoder.set_property("quantizer", 18u32);
    encoder.set_property_from_str("speed-preset", "medium");
    if keep_format {
        return Ok(vec![make("videoconvert")?, encoder]);
    }
    let caps = |caps: gst::Caps| {
        gst::ElementFactory::make("capsfilter")
            .property("caps", caps)
            .build()
            .context("the GStreamer element capsfilter is missing")
    };
    Ok(vec![
        make("videoconvert")?,
        caps(
            gst::Caps::builder("video/x-raw")
                .field("format", "I420")
                .build(),
        )?,
        encoder,
        caps(
            gst::Caps::builder("video/x-h264")
                .field("profile", "high")
                .build(),
        )?,
    ])
}

/// The audio keeps going to the same file: audioconvert ! audioresample ! avenc_aac ! mux.
fn link_audio(pipeline: &gst::Pipeline, pad: &gst::Pad) -> Result<()> {
    let mux = pipeline.by_name("mp4mux0").context("no muxer")?;
    let audio = [
        make("audioconvert")?,
        make("audioresample")?,
        make("avenc_aac")?,
    ];
    pipeline.add_many(&audio)?;
    gst::Element::link_many(&audio)?;
    audio[2].link(&mux)?;
    for element in &audio {
        element.sync_state_with_parent()?;
    }
    pad.link(&audio[0].static_pad("sink").unwrap())?;
    Ok(())
}

/// One line of the progress bar's message from a `wanedit-window` message.
fn window_line(s: &gst::StructureRef) -> Option<String> {
    let index = s.get::<u64>("index").ok()?;
    let state = s.get::<&str>("state").ok()?;
    let backend = s.get::<&str>("backend").ok()?;
    let job = s.get::<&str>("job-id").unwrap_or("");
    let progress = s.get::<f64>("progress").unwrap_or(-1.0);
    let elapsed = s.get::<f64>("elapsed").unwrap_or(0.0);
    let mut line = format!("window {index}: {state} on {backend}");
    if !job.is_empty() {
        line.push_str(&format!(" (job {job})"));
    }
    if progress >= 0.0 {
        line.push_str(&format!(" {:.0}%", progress * 100.0));
    }
    line.push_str(&format!(", {elapsed:.1} s"));
    Some(line)
}

fn run(pipeline: &gst::Pipeline) -> Result<()> {
    let bar = ProgressBar::new(1000);
    bar.set_style(
        ProgressStyle::with_template("{bar:40} {percent:>3}% [{elapsed_precise}] {msg}")
            .expect("a valid template"),
    );
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().unwrap();
    let mut done_windows = 0;
    loop {
        if let (Some(position), Some(duration)) = (
            pipeline.query_position::<gst::ClockTime>(),
            pipeline.query_duration::<gst::ClockTime>(),
        ) && duration > gst::ClockTime::ZERO
        {
            bar.set_position(position.nseconds() * 1000 / duration.nseconds());
        }
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(200)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Element(e) => {
                if let Some(s) = e.structure().filter(|s| s.name() == "wanedit-window") {
                    if s.get::<&str>("state") == Ok("done") {
                        done_windows += 1;
                    }
                    if let Some(line) = window_line(s) {
                        bar.set_message(format!("{done_windows} windows done; {line}"));
                    }
                }
            }
            gst::MessageView::Warning(w) => bar.println(format!("warning: {}", w.error())),
            gst::MessageView::Error(e) => {
                bar.abandon();
                bail!(
                    "{}{}",
                    e.error(),
                    e.debug().map(|d| format!(" ({d})")).unwrap_or_default()
                );
            }
            gst::MessageView::Eos(_) => {
                bar.set_position(1000);
                bar.finish_with_message(format!("{done_windows} windows edited"));
                return Ok(());
            }
            _ => {}
        }
    }
}

fn main() -> Result<()> {
    let args = parse_args()?;
    gst::init()?;
    gstwanedit::plugin_register_static()?;
    let pipeline = build(&args)?;
    let result = run(&pipeline);
    pipeline.set_state(gst::State::Null)?;
    // Let the cancel requests of abandoned jobs (if any) leave before the process does.
    std::thread::sleep(Duration::from_millis(200));
    result?;
    println!("wrote {}", args.output);
    Ok(())
}
