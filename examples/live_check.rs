//! Live check: `videotestsrc is-live=true` at 1080p60 I420 (pattern `smpte`, its
//! default, or `--pattern`) through `wanedit` (window 81, overlap 16, `max-in-flight=4`,
//! `processing-latency` 2500 ms or `--processing-latency`) with a backend that answers at
//! once, into a sink that syncs on the clock, for `--seconds` of wall time; then EOS and
//! a report.
//!
//!     cargo run --release --example live_check -- [--seconds 60] [--pattern smpte]
//!
//! It reports the frames the source produced and the frames that came out (with their
//! PTS compared one by one), the latency the pipeline reported, how late each frame
//! reached the sink beyond its running time plus that latency (the worst of these is the
//! delay a live viewer would see beyond the promise; late frames due after EOS was
//! sent, while the run's last windows drain, are counted apart), how far the source fell
//! behind its own clock (back-pressure: a real camera would drop those frames), QoS
//! messages, and the process's CPU use, with what a frame of the source costs drawn alone
//! (before the run, in the same process) so that the element's share shows whatever the
//! pattern. It exits non-zero if a frame was lost, duplicated or reordered, or the stream
//! errored. `scripts/live_check.sh` builds and runs it.

#[path = "../tests/support/mod.rs"]
mod support;

use std::process::ExitCode;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use gst::prelude::*;
use gst_base::prelude::*;

const USAGE: &str = "usage: live_check [--seconds N] [--pattern NAME] [--processing-latency MS]\n\
    NAME: a videotestsrc pattern (default smpte, videotestsrc's own default)\n\
    MS: wanedit's processing-latency (default 2500: a 1080p window scaled to the bucket and back)";
const CAPS: &str = "video/x-raw,format=I420,width=1920,height=1080,framerate=60/1";
/// Frames the source draws alone, to tell its CPU from the element's.
const SOURCE_ALONE_FRAMES: u32 = 300;
const FRAME: gst::ClockTime = gst::ClockTime::from_nseconds(1_000_000_000 / 60);

/// What the source probe and the sink callback see, in nanoseconds where signed.
#[derive(Default)]
struct Stats {
    source_pts: Vec<gst::ClockTime>,
    out_pts: Vec<gst::ClockTime>,
    /// Worst (arrival at the sink) - (running time + latency), and the PTS it happened at.
    worst_delay: Option<(i64, gst::ClockTime)>,
    /// Frames that reached the sink more than a frame duration after their time: due
    /// before EOS was sent (what a live stream, which never ends, sees), and due after it
    /// (while the element drains the run's last windows, the last of which covers the
    /// run's last `window-frames` frames and is only planned at EOS).
    late: u64,
    late_in_drain: u64,
    /// The running time at which EOS was sent.
    eos_at: Option<gst::ClockTime>,
    /// Worst (time the source pushed a frame) - (end of the frame's capture).
    worst_source_lag: Option<i64>,
}

fn signed_ns(a: gst::ClockTime, b: gst::ClockTime) -> i64 {
    a.nseconds() as i64 - b.nseconds() as i64
}

fn ms(ns: i64) -> f64 {
    ns as f64 / 1e6
}

/// User plus system CPU time of this process so far: /proc/self/stat counts it in
/// USER_HZ ticks, which Linux fixes at 100 a second on x86 and ARM.
fn cpu_time() -> Result<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat")?;
    // Fields after the command name, which may hold spaces: state is the first,
    // utime the 12th and stime the 13th.
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .context("unexpected /proc/self/stat")?
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 = fields[11].parse::<u64>()? + fields[12].parse::<u64>()?;
    Ok(Duration::from_millis(ticks * 10))
}

fn load_average() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .map(|l| l.split_whitespace().take(3).collect::<Vec<_>>().join(" "))
        .unwrap_or_else(|_| "unknown".into())
}

fn query_latency(
    pipeline: &gst::Pipeline,
) -> Option<(bool, gst::ClockTime, Option<gst::ClockTime>)> {
    let mut q = gst::query::Latency::new();
    pipeline.query(&mut q).then(|| q.result())
}

struct Args {
    run_for: Duration,
    pattern: String,
    processing_latency_ms: u32,
}

fn parse_args() -> Result<Args> {
    let mut seconds = 60.0;
    let mut pattern = "smpte".to_string();
    let mut processing_latency_ms = 2500;
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        match arg.as_str() {
            "--seconds" => {
                seconds = args
                    .next()
                    .and_then(|v| v.parse::<f64>().ok())
                    .filter(|v| v.is_finite() && *v > 0.0)
                    .with_context(|| format!("--seconds takes a positive number\n{USAGE}"))?
            }
            "--pattern" => {
                pattern = args
                    .next()
                    .with_context(|| format!("--pattern takes a name\n{USAGE}"))?
            }
            "--processing-latency" => {
                processing_latency_ms = args
                    .next()
                    .and_then(|v| v.parse().ok())
                    .with_context(|| format!("--processing-latency takes milliseconds\n{USAGE}"))?
            }
            "--help" => {
                println!("{USAGE}");
                std::process::exit(0);
            }
            _ => bail!("unknown option {arg}\n{USAGE}"),
        }
    }
    Ok(Args {
        run_for: Duration::from_secs_f64(seconds),
        pattern,
        processing_latency_ms,
    })
}

/// CPU time a frame of the source costs alone: it draws frames as fast as it can into a
/// fakesink, in this process, before the live run.
fn source_alone(pattern: &str) -> Result<Duration> {
    let pipeline = gst::parse::launch(&format!(
        "videotestsrc num-buffers={SOURCE_ALONE_FRAMES} pattern={pattern} ! {CAPS} ! fakesink"
    ))?;
    let started = cpu_time()?;
    pipeline.set_state(gst::State::Playing)?;
    let bus = pipeline.bus().unwrap();
    let ended = bus.timed_pop_filtered(
        gst::ClockTime::from_seconds(120),
        &[gst::MessageType::Eos, gst::MessageType::Error],
    );
    pipeline.set_state(gst::State::Null)?;
    match ended.as_ref().map(|m| m.view()) {
        Some(gst::MessageView::Eos(_)) => Ok((cpu_time()? - started) / SOURCE_ALONE_FRAMES),
        Some(gst::MessageView::Error(e)) => bail!("the source alone failed: {}", e.error()),
        _ => bail!("the source alone did not finish within 120 s"),
    }
}

/// Counts every frame the source pushes and how far behind its clock it pushes it.
fn watch_source(src: &gst::Element, stats: Arc<Mutex<Stats>>) {
    let pad = src.static_pad("src").unwrap();
    pad.add_probe(gst::PadProbeType::BUFFER, move |pad, info| {
        let Some(buffer) = info.buffer() else {
            return gst::PadProbeReturn::Ok;
        };
        let pts = buffer.pts().expect("videotestsrc stamps its frames");
        let end = pad
            .sticky_event::<gst::event::Segment>(0)
            .and_then(|e| {
                e.segment()
                    .downcast_ref::<gst::ClockTime>()?
                    .to_running_time(pts)
            })
            .map(|rt| rt + buffer.duration().unwrap_or(gst::ClockTime::ZERO));
        let now = pad.parent_element().and_then(|e| e.current_running_time());
        let mut stats = stats.lock().unwrap();
        stats.source_pts.push(pts);
        if let (Some(now), Some(end)) = (now, end) {
            let lag = signed_ns(now, end);
            stats.worst_source_lag = Some(stats.worst_source_lag.map_or(lag, |w| w.max(lag)));
        }
        gst::PadProbeReturn::Ok
    });
}

/// The latency the sink waits on: what the pipeline distributed in its LATENCY event.
fn sink_latency(sink: &gst_app::AppSink) -> gst::ClockTime {
    // The bindings do not declare AppSink a BaseSink; the GType is one.
    sink.dynamic_cast_ref::<gst_base::BaseSink>()
        .expect("appsink is a GstBaseSink")
        .latency()
}

/// Measures every frame when the sink renders it, that is after its clock wait.
fn watch_sink(sink: &gst_app::AppSink, stats: Arc<Mutex<Stats>>) {
    sink.set_callbacks(
        gst_app::AppSinkCallbacks::builder()
            .new_sample(move |sink| {
                let sample = sink.pull_sample().map_err(|_| gst::FlowError::Eos)?;
                let buffer = sample.buffer().ok_or(gst::FlowError::Error)?;
                let pts = buffer.pts().ok_or(gst::FlowError::Error)?;
                let due = sample
                    .segment()
                    .and_then(|s| s.downcast_ref::<gst::ClockTime>()?.to_running_time(pts))
                    .map(|rt| rt + sink_latency(sink));
                let now = sink.current_running_time();
                let mut stats = stats.lock().unwrap();
                stats.out_pts.push(pts);
                if let (Some(now), Some(due)) = (now, due) {
                    let delay = signed_ns(now, due);
                    if delay > FRAME.nseconds() as i64 {
                        match stats.eos_at {
                            Some(eos) if due >= eos => stats.late_in_drain += 1,
                            _ => stats.late += 1,
                        }
                    }
                    if stats.worst_delay.is_none_or(|(w, _)| delay > w) {
                        stats.worst_delay = Some((delay, pts));
                    }
                }
                Ok(gst::FlowSuccess::Ok)
            })
            .build(),
    );
}

fn main() -> Result<ExitCode> {
    let Args {
        run_for,
        pattern,
        processing_latency_ms,
    } = parse_args()?;
    support::init();
    let source_cost = source_alone(&pattern)?;
    let description = format!(
        "videotestsrc name=src is-live=true pattern={pattern} ! {CAPS} \
         ! wanedit name=edit max-in-flight=4 processing-latency={processing_latency_ms} \
         ! appsink name=sink sync=true"
    );
    let pipeline = gst::parse::launch(&description)?
        .downcast::<gst::Pipeline>()
        .unwrap();
    // An instant backend at the 480p buckets: what is measured is the element's own work
    // (scaling 1080p to 832x480 and back, crossfading, pushing), not a model's.
    let editor =
        support::Editor::identity().with_sizes(gstwanedit::backend::Resolution::P480.wan_buckets());
    pipeline
        .by_name("edit")
        .unwrap()
        .downcast::<gstwanedit::WanEdit>()
        .unwrap()
        .set_backend(editor);
    let stats = Arc::new(Mutex::new(Stats::default()));
    watch_source(&pipeline.by_name("src").unwrap(), stats.clone());
    let sink = pipeline
        .by_name("sink")
        .unwrap()
        .downcast::<gst_app::AppSink>()
        .unwrap();
    watch_sink(&sink, stats.clone());

    println!("{description}");
    println!(
        "instant backend, {} s, {} cores, load average before: {}",
        run_for.as_secs_f64(),
        std::thread::available_parallelism().map_or(0, |n| n.get()),
        load_average()
    );
    let bus = pipeline.bus().unwrap();
    let (cpu_start, wall_start) = (cpu_time()?, Instant::now());
    pipeline.set_state(gst::State::Playing)?;

    let mut failure = None;
    let mut qos = 0;
    let mut latency = None;
    let mut next_report = Duration::from_secs(10);
    let mut eos_sent = None;
    loop {
        let elapsed = wall_start.elapsed();
        if eos_sent.is_none() && elapsed >= run_for {
            stats.lock().unwrap().eos_at = pipeline.current_running_time();
            pipeline.send_event(gst::event::Eos::new());
            eos_sent = Some(Instant::now());
        }
        if eos_sent.is_some_and(|t| t.elapsed() > Duration::from_secs(300)) {
            failure = Some("no EOS within 300 s of sending it".to_string());
            break;
        }
        if elapsed >= next_report {
            let s = stats.lock().unwrap();
            println!(
                "{:>4} s: in {}, out {}, worst delay beyond latency {:.1} ms, worst source lag {:.1} ms",
                next_report.as_secs(),
                s.source_pts.len(),
                s.out_pts.len(),
                s.worst_delay.map_or(f64::NAN, |(d, _)| ms(d)),
                s.worst_source_lag.map_or(f64::NAN, ms),
            );
            next_report += Duration::from_secs(10);
        }
        let Some(message) = bus.timed_pop(gst::ClockTime::from_mseconds(100)) else {
            continue;
        };
        match message.view() {
            gst::MessageView::Eos(_) => break,
            gst::MessageView::Error(e) => {
                failure = Some(format!("{} ({:?})", e.error(), e.debug()));
                break;
            }
            gst::MessageView::Qos(_) => qos += 1,
            // A live pipeline computes its latency when the first frame reaches the sink
            // (async-done), and again on a Latency message (as gst-launch-1.0 does).
            gst::MessageView::Latency(_) => {
                let _ = pipeline.recalculate_latency();
                latency = query_latency(&pipeline).or(latency);
            }
            gst::MessageView::AsyncDone(_) => latency = query_latency(&pipeline).or(latency),
            _ => {}
        }
    }
    let wall = wall_start.elapsed();
    let cpu = cpu_time()? - cpu_start;
    pipeline.set_state(gst::State::Null)?;

    let s = stats.lock().unwrap();
    let expected = (run_for.as_secs_f64() * 60.0).round() as u64;
    let first_difference = s
        .source_pts
        .iter()
        .zip(&s.out_pts)
        .position(|(a, b)| a != b);
    let gaps = s
        .out_pts
        .windows(2)
        .filter(|p| p[1] - p[0] > FRAME + FRAME / 2)
        .count();
    let same = s.source_pts == s.out_pts;
    println!();
    println!(
        "frames from the source: {} ({expected} in {} s of real time)",
        s.source_pts.len(),
        run_for.as_secs_f64()
    );
    println!(
        "frames out:             {} (PTS equal to the source's, one by one: {}; gaps in the output PTS: {gaps}{})",
        s.out_pts.len(),
        if same { "yes" } else { "NO" },
        first_difference.map_or(String::new(), |i| format!(
            "; first difference at frame {i}"
        ))
    );
    match latency {
        Some((live, min, max)) => println!(
            "reported latency:       {:.1} ms (live {live}, max {}); the sink waited on {:.1} ms",
            ms(min.nseconds() as i64),
            max.map_or("none".into(), |m| format!(
                "{:.1} ms",
                ms(m.nseconds() as i64)
            )),
            ms(sink_latency(&sink).nseconds() as i64)
        ),
        None => println!("reported latency:       no answer to the latency query"),
    }
    match s.worst_delay {
        Some((delay, pts)) => println!(
            "worst delay beyond it:  {:.1} ms (frame at {pts}); frames later than one frame: {} due before EOS was sent, {} due after (the drain)",
            ms(delay),
            s.late,
            s.late_in_drain
        ),
        None => println!("worst delay beyond it:  no frame reached the sink"),
    }
    println!(
        "worst source lag:       {:.1} ms behind its clock (back-pressure)",
        s.worst_source_lag.map_or(f64::NAN, ms)
    );
    println!("QoS messages:           {qos}");
    println!(
        "CPU:                    {:.1} s user+sys over {:.1} s = {:.2} cores; load average after: {}",
        cpu.as_secs_f64(),
        wall.as_secs_f64(),
        cpu.as_secs_f64() / wall.as_secs_f64(),
        load_average()
    );
    // What a frame costs, whatever else shares the machine: at 60 fps a core gives
    // 16.7 ms a frame.
    let per_frame = cpu.as_secs_f64() / s.source_pts.len().max(1) as f64;
    println!(
        "CPU per frame:          {:.1} ms (60 fps takes {:.2} cores at this cost)",
        per_frame * 1e3,
        per_frame * 60.0
    );
    let source = source_cost.as_secs_f64();
    println!(
        "of which the source:    {:.1} ms (pattern {pattern}, {SOURCE_ALONE_FRAMES} frames drawn alone before the run); the rest, {:.1} ms, is the element and the sink ({:.2} cores at 60 fps)",
        source * 1e3,
        (per_frame - source) * 1e3,
        (per_frame - source) * 60.0
    );
    let keeps_up = s.late == 0
        && s.worst_source_lag
            .is_some_and(|l| l <= FRAME.nseconds() as i64);
    println!(
        "keeps up:               {}",
        if keeps_up {
            "yes"
        } else {
            "NO (frames due before EOS later than the reported latency, or the source held back)"
        }
    );
    if let Some(failure) = failure {
        println!("FAILED: {failure}");
        return Ok(ExitCode::FAILURE);
    }
    if !same {
        println!("FAILED: frames were lost, duplicated or reordered");
        return Ok(ExitCode::FAILURE);
    }
    Ok(ExitCode::SUCCESS)
}
