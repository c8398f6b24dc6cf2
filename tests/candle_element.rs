//! `backend=candle` through the element, on the CPU, with the committed parity cases'
//! tiny models: the edited frames equal diffusers' output, the model loads
//! asynchronously with progress messages, elements share one copy, a load failure is an
//! element error, and gst-launch-1.0 runs it from the shell.

mod support;

use std::path::{Path, PathBuf};
use std::sync::mpsc::{self, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use candle_core::{DType, Device, Tensor};
use gst::prelude::*;
use gstwanedit::backend::candle::{CandleBackend, CandleSettings, DeviceSpec, ModelKey, registry};
use gstwanedit::backend::runtime::runtime;
use gstwanedit::backend::{
    self, BackendConfig, BackendKind, EditParams, EditRequest, JobReporter, JobUpdate, RgbFrame,
    WindowFrames, WindowId,
};
use gstwanedit::wan::parity::CaseSpec;

const TIMEOUT: gst::ClockTime = gst::ClockTime::from_seconds(300);

fn case_dir(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/parity")
        .join(name)
}

fn model_dir(case: &str) -> String {
    case_dir(case).join("model").to_str().unwrap().to_owned()
}

fn cpu_key(case: &str) -> ModelKey {
    ModelKey::new(&model_dir(case), DeviceSpec::Cpu, DType::F32).unwrap()
}

/// A `wanedit backend=candle` on the CPU with a case's model, sending windows of
/// `frames` frames at the input size.
fn candle_element(case: &str, frames: u32) -> gst::Element {
    gst::ElementFactory::make("wanedit")
        .property_from_str("backend", "candle")
        .property("model", model_dir(case))
        .property("device", "cpu")
        .property_from_str("resolution", "native")
        .property("window-frames", frames)
        .property("overlap-frames", 0u32)
        .build()
        .unwrap()
}

/// A copy of a case's model of this test's own: pinned noise holds for every element
/// sharing a model, and a copy in another directory is another model, which no test
/// running beside this one loads.
fn private_model(case: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("wanedit-{case}-{}", std::process::id()));
    support::copy_dir(&case_dir(case).join("model"), &dir);
    dir
}

/// Pulls every sample up to EOS, and the messages the bus had; an error on the bus (a
/// failed window) fails the test at once with its text, instead of after `TIMEOUT`.
fn run_to_eos(
    pipeline: &gst::Pipeline,
    sink: &gst_app::AppSink,
) -> (Vec<gst::Sample>, Vec<gst::Message>) {
    let bus = pipeline.bus().unwrap();
    let deadline = Instant::now() + Duration::from_secs(TIMEOUT.seconds());
    let (mut samples, mut messages) = (Vec::new(), Vec::new());
    loop {
        messages.extend(bus.iter());
        for message in &messages {
            if let gst::MessageView::Error(e) = message.view() {
                panic!("error on the bus: {} ({:?})", e.error(), e.debug());
            }
        }
        match sink.try_pull_sample(gst::ClockTime::from_mseconds(100)) {
            Some(sample) => samples.push(sample),
            None if sink.is_eos() => break,
            None => assert!(Instant::now() < deadline, "no EOS within {TIMEOUT}"),
        }
    }
    messages.extend(bus.iter());
    (samples, messages)
}

/// Waits for the element's READY->PAUSED to be committed, or fails.
fn wait_paused(element: &gst::Element) {
    let (result, current, _) = element.state(TIMEOUT);
    assert_eq!(result, Ok(gst::StateChangeSuccess::Success));
    assert!(current >= gst::State::Paused, "{current:?}");
}

/// The case's frames as RGB buffers, and its expected output `[F, H, W, 3]` in [0, 1].
fn case_frames(case: &str) -> (Vec<gst::Buffer>, Tensor, Tensor) {
    let dir = case_dir(case);
    let inputs =
        candle_core::safetensors::load(dir.join("inputs.safetensors"), &Device::Cpu).unwrap();
    let expected =
        candle_core::safetensors::load(dir.join("expected.safetensors"), &Device::Cpu).unwrap();
    // The committed videos are 8-bit values, so the RGB round trip is exact.
    let frames = gstwanedit::wan::frames_to_rgb8(&inputs["video"]).unwrap();
    let buffers = frames
        .into_iter()
        .enumerate()
        .map(|(i, data)| {
            let mut buffer = gst::Buffer::from_mut_slice(data);
            let b = buffer.get_mut().unwrap();
            b.set_pts(gst::ClockTime::from_mseconds(62_500 * i as u64 / 1000));
            b.set_duration(gst::ClockTime::from_nseconds(62_500_000));
            buffer
        })
        .collect();
    (buffers, inputs["noise"].clone(), expected["video"].clone())
}

/// Runs a parity case through `appsrc ! wanedit backend=candle ! appsink` with the case's
/// noise, and compares the edited frames with diffusers' video.
fn edit_case_through_element(case: &str) {
    support::init();
    let spec = CaseSpec::read(&case_dir(case)).unwrap();
    let (buffers, noise, expected) = case_frames(case);
    let pipeline = gst::Pipeline::new();
    let caps = gst_video::VideoInfo::builder(
        gst_video::VideoFormat::Rgb,
        spec.width as u32,
        spec.height as u32,
    )
    .fps(gst::Fraction::new(16, 1))
    .build()
    .unwrap()
    .to_caps()
    .unwrap();
    let src = gst_app::AppSrc::builder()
        .caps(&caps)
        .format(gst::Format::Time)
        .build();
    let edit = candle_element(case, spec.num_frames as u32);
    let model = private_model(case);
    edit.set_property("model", model.to_str().unwrap());
    edit.set_property("prompt", &spec.prompt);
    edit.set_property("negative-prompt", &spec.negative_prompt);
    edit.set_property("num-inference-steps", spec.num_inference_steps as u32);
    edit.set_property("guidance-scale", spec.guidance_scale);
    edit.set_property("strength", spec.strength.unwrap_or(-1.0));
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([src.upcast_ref(), &edit, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &edit, sink.upcast_ref()]).unwrap();

    // The model loads on a worker thread: the state change is asynchronous.
    assert_eq!(
        pipeline.set_state(gst::State::Playing),
        Ok(gst::StateChangeSuccess::Async)
    );
    wait_paused(&edit);
    let key = ModelKey::new(model.to_str().unwrap(), DeviceSpec::Cpu, DType::F32).unwrap();
    let shared = registry::lookup(&key).expect("the element holds the model");
    shared.pin_noise(Some(noise));

    for buffer in buffers {
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    let (samples, bus_messages) = run_to_eos(&pipeline, &sink);
    let mut edited = Vec::new();
    for sample in samples {
        let buffer = sample.buffer().unwrap().map_readable().unwrap();
        edited.extend(buffer.iter().map(|&v| v as f32 / 255.0));
    }
    pipeline.set_state(gst::State::Null).unwrap();
    drop(shared);
    std::fs::remove_dir_all(model).unwrap();

    let expected_values = expected.flatten_all().unwrap().to_vec1::<f32>().unwrap();
    assert_eq!(
        edited.len(),
        expected_values.len(),
        "every frame comes back"
    );
    let worst = edited
        .iter()
        .zip(&expected_values)
        .map(|(a, b)| (a - b).abs())
        .fold(0f32, f32::max);
    // 8-bit output: half a step of rounding, plus the port's own error (~1e-6).
    assert!(worst <= 0.51 / 255.0, "{case}: worst pixel error {worst}");

    let progress: Vec<String> = bus_messages
        .iter()
        .filter_map(|m| match m.view() {
            gst::MessageView::Progress(p) => Some(format!("{:?}", p.get().0)),
            _ => None,
        })
        .collect();
    assert_eq!(progress, ["Start", "Complete"], "model load progress");
    let steps: Vec<f64> = bus_messages
        .iter()
        .filter_map(|m| m.structure())
        .filter(|s| s.name() == "wanedit-window" && s.get::<&str>("state") == Ok("running"))
        .map(|s| s.get::<f64>("progress").unwrap())
        .collect();
    let kept = match spec.strength {
        Some(strength) => (spec.num_inference_steps as f64 * strength) as usize,
        None => spec.num_inference_steps,
    };
    let per_step: Vec<f64> = (0..=kept).map(|i| i as f64 / kept as f64).collect();
    assert_eq!(
        steps, per_step,
        "one running message before and after each step"
    );
}

#[test]
fn video2video_case_through_the_element_equals_diffusers() {
    edit_case_through_element("v2v_square_f5_4steps_cfg");
}

#[test]
fn lucy_edit_case_through_the_element_equals_diffusers() {
    edit_case_through_element("lucy_square_f5_1step");
}

#[test]
fn elements_with_the_same_model_share_one_copy() {
    support::init();
    let case = "t2v_square_f5_1step";
    let key = cpu_key(case);
    let a = candle_element(case, 5);
    let b = candle_element(case, 5);
    let mut loads = Vec::new();
    for e in [&a, &b] {
        let pipeline = gst::Pipeline::new();
        pipeline.add(e).unwrap();
        e.set_property("prompt", "a red ball");
        assert_eq!(
            e.set_state(gst::State::Paused),
            Ok(gst::StateChangeSuccess::Async)
        );
        wait_paused(e);
        let bus = pipeline.bus().unwrap();
        let done =
            std::iter::from_fn(|| bus.pop_filtered(&[gst::MessageType::Progress])).find_map(|m| {
                match m.view() {
                    gst::MessageView::Progress(p) if p.get().0 == gst::ProgressType::Complete => {
                        Some(p.get().2.to_string())
                    }
                    _ => None,
                }
            });
        loads.push(done.expect("a load-model complete message"));
        pipeline.remove(e).unwrap();
    }
    let model = model_dir(case);
    assert_eq!(
        loads,
        [
            format!("loaded {model} on cpu"),
            format!("{model} on cpu already loaded: shared")
        ],
        "the second element loads nothing"
    );
    assert_eq!(registry::holders(&key), 2, "two backends, one model");
    let shared = registry::lookup(&key).unwrap();
    assert!(
        !shared.has_text_encoder(),
        "the text encoder is dropped once the prompt is encoded"
    );
    drop(shared);
    a.set_state(gst::State::Null).unwrap();
    assert_eq!(registry::holders(&key), 1);
    b.set_state(gst::State::Null).unwrap();
    assert_eq!(
        registry::holders(&key),
        0,
        "the last element frees the model"
    );
}

#[test]
fn keep_text_encoder_keeps_it() {
    support::init();
    let case = "v2v_wide_f9_1step";
    let e = candle_element(case, 9);
    e.set_property("keep-text-encoder", true);
    e.set_state(gst::State::Paused).unwrap();
    wait_paused(&e);
    assert!(registry::lookup(&cpu_key(case)).unwrap().has_text_encoder());
    e.set_state(gst::State::Null).unwrap();
}

#[test]
fn a_model_that_cannot_load_is_an_element_error() {
    support::init();
    let pipeline = gst::Pipeline::new();
    let e = candle_element("lucy_square_f5_1step", 5);
    e.set_property("model", "/nonexistent/wan-model");
    pipeline.add(&e).unwrap();
    assert_eq!(
        pipeline.set_state(gst::State::Paused),
        Ok(gst::StateChangeSuccess::Async)
    );
    let bus = pipeline.bus().unwrap();
    let error = bus
        .timed_pop_filtered(TIMEOUT, &[gst::MessageType::Error])
        .expect("an error message");
    let gst::MessageView::Error(error) = error.view() else {
        unreachable!()
    };
    let text = error.error().to_string();
    assert!(text.contains("/nonexistent/wan-model"), "{text}");
    let (result, ..) = e.state(TIMEOUT);
    assert_eq!(result, Err(gst::StateChangeError));
    pipeline.set_state(gst::State::Null).unwrap();
}

#[test]
fn bf16_on_the_cpu_is_refused_before_loading() {
    support::init();
    let e = candle_element("lucy_square_f5_1step", 5);
    e.set_property_from_str("dtype", "bf16");
    let pipeline = gst::Pipeline::new();
    pipeline.add(&e).unwrap();
    pipeline.set_state(gst::State::Paused).unwrap();
    let message = pipeline
        .bus()
        .unwrap()
        .timed_pop_filtered(TIMEOUT, &[gst::MessageType::Error])
        .unwrap();
    let gst::MessageView::Error(error) = message.view() else {
        unreachable!()
    };
    assert!(error.error().to_string().contains("bf16 needs device=cuda"));
    pipeline.set_state(gst::State::Null).unwrap();
}

/// The plugin as built (`libgstwanedit.so` beside the test binaries' folder).
fn plugin_dir() -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    exe.parent().and_then(Path::parent).unwrap().to_path_buf()
}

#[test]
fn gst_launch_runs_backend_candle_from_the_shell() {
    let dir = plugin_dir();
    assert!(
        dir.join("libgstwanedit.so").is_file(),
        "no plugin in {}: run `cargo build --release` first (.ci/run does)",
        dir.display()
    );
    let registry_file =
        std::env::temp_dir().join(format!("wanedit-registry-{}.bin", std::process::id()));
    let output = std::process::Command::new("timeout")
        .arg("300")
        .arg("gst-launch-1.0")
        .args(
            "videotestsrc num-buffers=9 ! video/x-raw,format=RGB,width=48,height=32,framerate=16/1 \
             ! wanedit backend=candle device=cpu resolution=native window-frames=5 \
             overlap-frames=2 num-inference-steps=2 strength=0.5 seed=3"
                .split_whitespace(),
        )
        .arg(format!("model={}", model_dir("v2v_wide_f9_1step")))
        .arg("prompt=make it snow")
        .args(["!", "fakesink"])
        .env("GST_PLUGIN_PATH", &dir)
        .env("GST_REGISTRY", &registry_file)
        .output()
        .unwrap();
    let _ = std::fs::remove_file(&registry_file);
    let stdout = String::from_utf8_lossy(&output.stdout);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(output.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains("Got EOS"), "{stdout}");
}

/// `backend=candle` on the CPU with a case's model.
fn backend_config(case: &str, params: EditParams) -> BackendConfig {
    BackendConfig {
        kind: BackendKind::Candle,
        model: Some(model_dir(case)),
        params,
        candle: CandleSettings {
            device: "cpu".into(),
            ..Default::default()
        },
        ..Default::default()
    }
}

/// A video-to-video edit of `steps` steps without guidance: cheap steps, many reports.
fn many_steps(steps: usize) -> EditParams {
    EditParams {
        prompt: "a boat".into(),
        num_inference_steps: Some(steps as u32),
        guidance_scale: Some(1.0),
        strength: Some(1.0),
        seed: Some(1),
        ..Default::default()
    }
}

/// A window of 5 frames of one colour at the case's size.
fn flat_window(case: &str, params: EditParams, reporter: JobReporter) -> EditRequest {
    let spec = CaseSpec::read(&case_dir(case)).unwrap();
    let frame = RgbFrame::filled(spec.width as u32, spec.height as u32, [90, 140, 200]);
    EditRequest {
        window: WindowId {
            index: 0,
            first_pts: None,
            frames: 5,
        },
        frames: WindowFrames::from_frames(vec![frame; 5]),
        frame_rate: gst::Fraction::new(16, 1),
        params,
        anchor: None,
        mask: None,
        reporter,
    }
}

/// The backend alone: a seed repeats a window exactly, another seed or another
/// flow-shift changes it, and the reporter hears every step.
#[test]
fn a_seed_repeats_an_edit() {
    support::init();
    let case = "v2v_tall_f13_long_prompt";
    let params = |seed, flow_shift| EditParams {
        prompt: "a boat".into(),
        num_inference_steps: Some(2),
        guidance_scale: Some(1.0),
        strength: Some(1.0),
        seed: Some(seed),
        flow_shift,
        ..Default::default()
    };
    let edit = |seed: u64, flow_shift: Option<f64>, updates: Arc<Mutex<Vec<JobUpdate>>>| {
        let params = params(seed, flow_shift);
        let backend = backend::create(&backend_config(case, params.clone())).unwrap();
        let reporter = JobReporter::new(move |u| updates.lock().unwrap().push(u));
        let clip = runtime()
            .block_on(backend.edit(flat_window(case, params, reporter)))
            .unwrap();
        clip.into_frames()
            .flat_map(|f| f.unwrap().image.to_rgb().unwrap().data)
            .collect::<Vec<u8>>()
    };
    let updates = Arc::new(Mutex::new(Vec::new()));
    let first = edit(7, None, updates.clone());
    assert_eq!(
        first,
        edit(7, None, Arc::default()),
        "same seed, same frames"
    );
    assert_ne!(
        first,
        edit(8, None, Arc::default()),
        "another seed, other frames"
    );
    assert_ne!(
        first,
        edit(7, Some(9.0), Arc::default()),
        "another shift, other frames"
    );
    let progress: Vec<Option<f64>> = updates
        .lock()
        .unwrap()
        .iter()
        .filter_map(|u| match u {
            JobUpdate::Running { progress } => Some(*progress),
            JobUpdate::Submitted { .. } => None,
        })
        .collect();
    assert_eq!(progress, [Some(0.0), Some(0.5), Some(1.0)]);
}

/// Dropping a window's future (a flush, a stop, a timeout) stops the model thread at its
/// next step: the thread lets go of the reporter long before the steps asked for.
#[test]
fn dropping_an_edit_stops_the_model_thread() {
    const STEPS: usize = 200;
    support::init();
    let (case, params) = ("v2v_tall_f13_long_prompt", many_steps(STEPS));
    let backend = backend::create(&backend_config(case, params.clone())).unwrap();
    // The sender lives in the reporter, so the channel closes when the thread ends.
    let (tx, rx) = mpsc::channel();
    let reporter = JobReporter::new(move |u| {
        let _ = tx.send(u);
    });
    let edit = runtime().spawn(backend.edit(flat_window(case, params, reporter)));
    let deadline = Instant::now() + Duration::from_secs(120);
    let next = || rx.recv_timeout(deadline.saturating_duration_since(Instant::now()));

    let mut reports = 0;
    loop {
        match next() {
            Ok(JobUpdate::Running { progress }) => {
                reports += 1;
                if progress > Some(0.0) {
                    break;
                }
            }
            Ok(JobUpdate::Submitted { .. }) => {}
            Err(e) => panic!("no step ran: {e}"),
        }
    }
    edit.abort();
    let dropped = runtime()
        .block_on(edit)
        .expect_err("the edit is still running");
    assert!(dropped.is_cancelled(), "{dropped}");
    loop {
        match next() {
            Ok(_) => reports += 1,
            Err(RecvTimeoutError::Disconnected) => break,
            Err(RecvTimeoutError::Timeout) => {
                panic!("the model thread still runs after the edit was dropped ({reports} reports)")
            }
        }
    }
    assert!(
        reports < STEPS / 4,
        "{reports} reports for {STEPS} steps: the model thread went on after the drop"
    );
}

/// What a window's reporter heard, and when the window's model thread let it go.
#[derive(Debug, PartialEq)]
enum Heard {
    Running(char),
    Released(char),
}

/// Says [`Heard::Released`] when the reporter holding it is dropped, which the model
/// thread does as it ends.
struct ReleaseMarker(char, mpsc::Sender<Heard>);

impl Drop for ReleaseMarker {
    fn drop(&mut self) {
        let _ = self.1.send(Heard::Released(self.0));
    }
}

fn marked_reporter(window: char, tx: &mpsc::Sender<Heard>) -> JobReporter {
    let marker = ReleaseMarker(window, tx.clone());
    let tx = tx.clone();
    JobReporter::new(move |u| {
        let _ = &marker;
        if matches!(u, JobUpdate::Running { .. }) {
            let _ = tx.send(Heard::Running(window));
        }
    })
}

/// Two windows given to one backend at once run one after the other: the second starts
/// (its first progress report) only once the first window's thread has ended, so a
/// window dropped mid-step never runs beside the next one on the GPU.
#[test]
fn windows_of_one_backend_never_run_side_by_side() {
    const STEPS: usize = 40;
    support::init();
    let (case, params) = ("v2v_tall_f13_long_prompt", many_steps(STEPS));
    let backend = backend::create(&backend_config(case, params.clone())).unwrap();
    let (tx, rx) = mpsc::channel();
    let first =
        runtime().spawn(backend.edit(flat_window(case, params.clone(), marked_reporter('a', &tx))));
    assert_eq!(
        rx.recv_timeout(Duration::from_secs(120)),
        Ok(Heard::Running('a')),
        "the first window never started"
    );
    let second =
        runtime().spawn(backend.edit(flat_window(case, params, marked_reporter('b', &tx))));
    drop(tx);
    for edit in [first, second] {
        let clip = runtime().block_on(edit).unwrap().unwrap();
        assert_eq!(clip.into_frames().count(), 5);
    }
    let heard: Vec<Heard> = rx.iter().collect();
    let released_a = heard.iter().position(|h| *h == Heard::Released('a'));
    let started_b = heard.iter().position(|h| *h == Heard::Running('b'));
    assert!(
        matches!((released_a, started_b), (Some(a), Some(b)) if a < b),
        "the second window ran beside the first: {heard:?}"
    );
    assert_eq!(
        heard.iter().filter(|h| **h == Heard::Running('a')).count(),
        STEPS,
        "the first window, after the report awaited above: one report per step"
    );
}

/// A prompt that was not encoded at load (changed while playing) loads the dropped text
/// encoder again, and drops it after.
#[test]
fn a_new_prompt_reloads_the_dropped_text_encoder() {
    let case = "lucy_tall_f13_unipc_long_prompt";
    let config = backend_config(
        case,
        EditParams {
            prompt: "first".into(),
            ..Default::default()
        },
    );
    let backend = CandleBackend::new(&config).unwrap();
    let shared = backend.shared_model();
    assert!(!shared.has_text_encoder());
    let embeds = shared.prompt_embeds("second", "", 5.0).unwrap();
    assert_eq!(embeds.cond.dims()[1], 512);
    assert!(
        embeds.uncond.is_some(),
        "guidance > 1 needs the negative prompt"
    );
    assert!(!shared.has_text_encoder(), "dropped again");
    let first = shared.prompt_embeds("first", "", 1.0).unwrap();
    assert!(first.uncond.is_none());
}

/// 21 frames of a case's size, each another colour, through `wanedit backend=candle
/// seam=anchor` with W=9 and O=5 (windows [0, 9), [4, 13), [8, 17), [12, 21): each
/// window's latent frame 1, its frames 1-4, is the window before's latent frame 2). Returns
/// the frames out and the order the windows were done in.
fn anchored_stream(case: &str, anchor_strength: f64) -> (Vec<Vec<u8>>, Vec<u64>) {
    support::init();
    let spec = CaseSpec::read(&case_dir(case)).unwrap();
    let (width, height) = (spec.width as u32, spec.height as u32);
    let info = gst_video::VideoInfo::builder(gst_video::VideoFormat::Rgb, width, height)
        .fps(gst::Fraction::new(16, 1))
        .build()
        .unwrap();
    let pipeline = gst::Pipeline::new();
    let src = gst_app::AppSrc::builder()
        .caps(&info.to_caps().unwrap())
        .format(gst::Format::Time)
        .build();
    let edit = candle_element(case, 9);
    edit.set_property("overlap-frames", 5u32);
    edit.set_property_from_str("seam", "anchor");
    edit.set_property("anchor-strength", anchor_strength);
    edit.set_property("max-in-flight", 4u32);
    edit.set_property("prompt", "make it snow");
    edit.set_property("num-inference-steps", 2u32);
    edit.set_property("strength", 1.0);
    edit.set_property("seed", 1i64);
    let sink = gst_app::AppSink::builder().sync(false).build();
    pipeline
        .add_many([src.upcast_ref(), &edit, sink.upcast_ref()])
        .unwrap();
    gst::Element::link_many([src.upcast_ref(), &edit, sink.upcast_ref()]).unwrap();
    pipeline.set_state(gst::State::Playing).unwrap();
    for i in 0..21u64 {
        let rgb = [(i * 12) as u8, 200 - (i * 9) as u8, 90];
        let mut buffer = gst::Buffer::from_mut_slice(RgbFrame::filled(width, height, rgb).data);
        let b = buffer.get_mut().unwrap();
        b.set_pts(gst::ClockTime::from_mseconds(62_500 * i / 1000));
        b.set_duration(gst::ClockTime::from_nseconds(62_500_000));
        src.push_buffer(buffer).unwrap();
    }
    src.end_of_stream().unwrap();
    let (samples, messages) = run_to_eos(&pipeline, &sink);
    let mut frames = Vec::new();
    let mut pts = Vec::new();
    for sample in samples {
        let buffer = sample.buffer().unwrap();
        pts.push(buffer.pts().unwrap().mseconds());
        frames.push(buffer.map_readable().unwrap().to_vec());
    }
    let done: Vec<u64> = messages
        .iter()
        .filter_map(|m| m.structure().map(|s| s.to_owned()))
        .filter(|s| s.name() == "wanedit-window" && s.get::<&str>("state") == Ok("done"))
        .map(|s| s.get::<u64>("index").unwrap())
        .collect();
    pipeline.set_state(gst::State::Null).unwrap();
    let expected_pts: Vec<u64> = (0..21).map(|i| 62_500 * i / 1000).collect();
    assert_eq!(pts, expected_pts, "every frame out, at its PTS");
    (frames, done)
}

#[test]
fn seam_anchor_chains_candle_windows_and_holds_their_shared_latents() {
    let case = "v2v_square_f5_4steps_cfg";
    let (held, done) = anchored_stream(case, 1.0);
    assert_eq!(done, [0, 1, 2, 3], "windows done one after another");
    let (free, _) = anchored_stream(case, 0.0);
    // Window 0 continues nothing: its own frames are the same either way.
    assert_eq!(held[..4], free[..4]);
    // The later windows' shared latents were held to the window before's.
    assert!((4..21).any(|i| held[i] != free[i]));
}
