//! The GStreamer glue of `wanedit`: pads, properties, events, queries, state changes.
//!
//! The sink pad's chain function holds each frame, plans windows and submits jobs (waiting
//! while `max-in-flight` jobs run); jobs run on the plugin's tokio runtime and deliver
//! their frames back; a task on the src pad pushes frames and events out in input order
//! once they are final.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoInfo;

use super::job::{Job, JobOutcome};
use super::load;
use super::message::{WindowReporter, WindowState};
use super::properties;
use super::settings::Settings;
use super::state::{Run, State, Windowing};
use crate::backend::{
    self, Backend, BackendConfig, BackendKind, ConfigError, Size, WindowId,
};
use crate::stream::geometry::choose_size;
use crate::stream::planner::Window;

static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "wanedit",
        gst::DebugColorFlags::empty(),
        Some("Edits video with Wan video diffusion models"),
    )
});

pub struct WanEdit {
    sinkpad: gst::Pad,
    srcpad: gst::Pad,
    settings: Mutex<Settings>,
    custom_backend: Mutex<Option<Arc<dyn Backend>>>,
    /// `None` outside PAUSED and PLAYING.
    state: Mutex<Option<State>>,
    /// Signalled whenever a job finishes, a frame or event is held, flushing starts, or
    /// a background load ends.
    changed: Condvar,
    /// A backend is being built in the background (see `load`); changed with `state`
    /// locked.
    loading: AtomicBool,
    /// Bumped whenever a background load is started or abandoned, so that a load that
    /// ends after the element left PAUSED is dropped.
    load_generation: AtomicU64,
}

/// How READY->PAUSED goes on once the settings are checked.
enum Start {
    /// The backend is ready and the stream state made.
    Ready,
    /// The backend loads a model: it is built in the background.
    Load(Box<BackendConfig>),
}

type Guard<'a> = MutexGuard<'a, Option<State>>;

fn stream_state<'a>(guard: &'a mut Guard<'_>) -> Result<&'a mut State, gst::FlowError> {
    guard.as_mut().ok_or(gst::FlowError::Flushing)
}

impl WanEdit {
    pub fn set_backend(&self, backend: Arc<dyn Backend>) {
        *self.custom_backend.lock().unwrap() = Some(backend);
        self.settings.lock().unwrap().backend = BackendKind::Custom;
    }

    fn post(&self, messages: Vec<gst::Message>) {
        for m in messages {
            let _ = self.obj().post_message(m);
        }
    }

    fn start(&self) -> Result<Start, ConfigError> {
        let settings = self.settings.lock().unwrap().clone();
        settings.validate()?;
        let backend = match (
            settings.backend,
            self.custom_backend.lock().unwrap().clone(),
        ) {
            (BackendKind::Custom, Some(custom)) => custom,
            _ if load::in_background(&settings) => {
                return Ok(Start::Load(Box::new(settings.backend_config())));
            }
            _ => backend::create(&settings.backend_config())?,
        };
        *self.state.lock().unwrap() = Some(self.begin(&settings, backend)?);
        Ok(Start::Ready)
    }

    /// Checks the backend against the settings and makes the stream state.
    fn begin(&self, settings: &Settings, backend: Arc<dyn Backend>) -> Result<State, ConfigError> {
        let capabilities = backend.capabilities(settings.resolution);
        let counts = capabilities.frame_counts;
        if !counts.accepts(settings.window_frames as usize) {
            return Err(ConfigError::WindowLength {
                backend: backend.name().to_owned(),
                frames: settings.window_frames,
                what: format!(
                    "set window-frames to one it accepts: {} to {}{}",
                    counts.min,
                    counts.max,
                    if counts.four_n_plus_one { ", 4n+1" } else { "" }
                ),
            });
        }
        if settings.reference_image.is_some() && !capabilities.reference_image {
            return Err(ConfigError::Unsupported {
                backend: backend.name().to_owned(),
                property: "reference-image",
                why: "its model takes no reference image; unset reference-image".into(),
            });
        }
        if settings.backend == BackendKind::Auto {
            gst::element_imp_info!(
                self,
                gst::LibraryError::Settings,
                ("backend=auto chose {}", backend.name())
            );
        }
        gst::info!(CAT, imp = self, "editing with backend {}", backend.name());
        let windowing = Windowing {
            window: settings.window_frames,
            overlap: settings.overlap_frames,
        };
        Ok(State::new(backend, capabilities, windowing))
    }

    fn stop_streaming(&self) {
        let mut guard = self.state.lock().unwrap();
        if let Some(state) = guard.as_mut() {
            state.flushing = true;
            state.cancel_jobs();
        }
        self.load_generation.fetch_add(1, Ordering::SeqCst);
        self.loading.store(false, Ordering::SeqCst);
        drop(guard);
        self.changed.notify_all();
    }

    /// Builds the backend on a worker thread; READY->PAUSED completes when it is ready.
    fn start_loading(&self, config: BackendConfig) -> Result<(), ConfigError> {
        let generation = {
            let _guard = self.state.lock().unwrap();
            self.loading.store(true, Ordering::SeqCst);
            self.load_generation.fetch_add(1, Ordering::SeqCst) + 1
        };
        let obj = self.obj();
        let _ = obj.post_message(gst::message::AsyncStart::builder().src(&*obj).build());
        let weak = obj.downgrade();
        load::spawn(&obj, config, move |result| {
            if let Some(element) = weak.upgrade() {
                element.imp().loaded(generation, result);
            }
        })
        .map_err(|e| {
            self.stop_streaming();
            ConfigError::Invalid {
                property: "backend",
                why: format!("cannot start a thread to load the model: {e}"),
            }
        })
    }

    /// Ends a background load: makes the stream state and commits PAUSED, or fails.
    fn loaded(&self, generation: u64, result: Result<Arc<dyn Backend>, ConfigError>) {
        let settings = self.settings.lock().unwrap().clone();
        let begun = result.and_then(|backend| self.begin(&settings, backend));
        let begun = {
            // Checked with the state locked: leaving PAUSED bumps the generation there.
            let mut guard = self.state.lock().unwrap();
            if self.load_generation.load(Ordering::SeqCst) != generation {
                return;
            }
            self.loading.store(false, Ordering::SeqCst);
            begun.map(|state| *guard = Some(state))
        };
        self.changed.notify_all();
        let obj = self.obj();
        match begun.map_err(|e| e.to_string()).and_then(|()| {
            self.start_task()
                .map_err(|e| format!("cannot start the src task: {e}"))
        }) {
            Ok(()) => {
                let _ = obj.continue_state(gst::StateChangeReturn::Success);
                let _ = obj.post_message(gst::message::AsyncDone::builder().src(&*obj).build());
            }
            Err(e) => {
                gst::element_imp_error!(self, gst::LibraryError::Init, ("{e}"));
                obj.abort_state();
            }
        }
    }

    /// The stream state, once no backend is being built in the background.
    fn ready_state(&self) -> Guard<'_> {
        let mut guard = self.state.lock().unwrap();
        while self.loading.load(Ordering::SeqCst) {
            guard = self.changed.wait(guard).unwrap();
        }
        guard
    }

    fn sink_chain(&self, buffer: gst::Buffer) -> Result<gst::FlowSuccess, gst::FlowError> {
        let mut guard = self.ready_state();
        let state = stream_state(&mut guard)?;
        state.flow()?;
        let Some(run) = state.run.as_mut() else {
            gst::element_imp_error!(
                self,
                gst::CoreError::Negotiation,
                ("a buffer arrived before caps; upstream must send caps first")
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        let window = run.planner.push_frame();
        let number = state.next_frame;
        state.next_frame += 1;
        state.composer.push_frame(number, buffer);
        let planned = window.map(|w| (w, state.composer.plan(w)));
        self.changed.notify_all();
        if let Some((window, inputs)) = planned {
            guard = self.submit(guard, window, inputs)?;
        }
        stream_state(&mut guard)?.flow()
    }

    /// Starts the job of a window, first waiting while the jobs in flight fill every slot
    /// (this is the element's back-pressure). The window must already be planned with the
    /// composer, in the same lock as the planner made it: else its frames could leave
    /// while this waits.
    fn submit<'a>(
        &'a self,
        mut guard: Guard<'a>,
        window: Window,
        inputs: Vec<gst::Buffer>,
    ) -> Result<Guard<'a>, gst::FlowError> {
        let settings = self.settings.lock().unwrap().clone();
        loop {
            let state = stream_state(&mut guard)?;
            state.flow()?;
            let slots =
                (settings.max_in_flight as usize).min(state.capabilities.max_concurrency.max(1));
            if state.jobs.len() < slots {
                break;
            }
            guard = self.changed.wait(guard).unwrap();
        }
        let state = stream_state(&mut guard)?;
        let run = state
            .run
            .as_ref()
            .expect("windows are planned only with caps");
        let id = WindowId {
            index: window.index,
            first_pts: inputs.first().and_then(|b| b.pts()),
            frames: inputs.len(),
        };
        let padded_len = state
            .capabilities
            .frame_counts
            .padded_length(inputs.len())
            .unwrap_or(state.windowing.window as usize);
        let reports = WindowReporter::new(
            self.obj().upcast_ref(),
            id,
            state.backend.name(),
        );
        let job = Job {
            id,
            inputs,
            info: run.info.clone(),
            send_size: run.send_size,
            padded_len,
            params: settings.params(),
            on_error: settings.on_error,
            timeout: settings.job_timeout(),
            retries: settings.window_retries,
            backend: state.backend.clone(),
            reports: reports.clone(),
        };
        let epoch = state.epoch;
        let element = self.obj().downgrade();
        // The task posts `queued` itself, so that no report of the job can overtake it.
        let task = backend::runtime::runtime().spawn(async move {
            reports.post(WindowState::Queued, 1, None);
            let (attempt, outcome) = job.run().await;
            if let Some(element) = element.upgrade() {
                element.imp().deliver(epoch, &reports, attempt, outcome);
            }
        });
        state.jobs.insert(window.index, task.abort_handle());
        drop(guard);
        Ok(self.state.lock().unwrap())
    }

    fn is_current(&self, epoch: u64) -> bool {
        self.state
            .lock()
            .unwrap()
            .as_ref()
            .is_some_and(|s| s.epoch == epoch)
    }

    /// Takes a finished job's outcome: reports it, then hands its frames to the composer.
    /// Reports go out first, so that a window's `done` or warning always comes before
    /// its frames (and before EOS) and is never posted with the state locked.
    fn deliver(&self, epoch: u64, reports: &WindowReporter, attempt: u32, outcome: JobOutcome) {
        if !self.is_current(epoch) {
            return;
        }
        let id = reports.window;
        let failure = |cause: &dyn std::fmt::Display| {
            format!(
                "backend {} failed on window {} (first PTS {}, {} frames{}): {cause}",
                reports.backend,
                id.index,
                id.first_pts.display(),
                id.frames,
                if attempt > 1 {
                    format!(", {attempt} attempts")
                } else {
                    String::new()
                }
            )
        };
        let frames = match outcome {
            JobOutcome::Edited(frames) => {
                self.post(vec![reports.message(WindowState::Done, attempt, None)]);
                frames
            }
            JobOutcome::PassedThrough { frames, cause } => {
                let cause = cause.to_string();
                let text = format!("{}; passing its original frames through", failure(&cause));
                self.post(vec![
                    reports.message(WindowState::Failed, attempt, Some(&cause)),
                    gst::message::Warning::builder(gst::StreamError::Failed, &text)
                        .src(&*self.obj())
                        .build(),
                ]);
                frames
            }
            JobOutcome::Failed(cause) => {
                let cause = cause.to_string();
                return self.fail(epoch, reports, attempt, &cause, &failure(&cause));
            }
        };
        let blend = self.settings.lock().unwrap().blend;
        let mut guard = self.state.lock().unwrap();
        let Some(state) = guard.as_mut().filter(|s| s.epoch == epoch) else {
            return;
        };
        state.jobs.remove(&id.index);
        let composed = state.composer.finish(id.index, frames, blend);
        drop(guard);
        self.changed.notify_all();
        if let Err(e) = composed {
            let cause = e.to_string();
            self.fail(epoch, reports, attempt, &cause, &failure(&cause));
        }
    }

    /// Stops the stream on a failed window (on-error=fail).
    fn fail(
        &self,
        epoch: u64,
        reports: &WindowReporter,
        attempt: u32,
        cause: &str,
        error: &str,
    ) {
        if let Some(state) = self
            .state
            .lock()
            .unwrap()
            .as_mut()
            .filter(|s| s.epoch == epoch)
        {
            state.jobs.remove(&reports.window.index);
            state.failed = true;
        } else {
            return;
        }
        self.changed.notify_all();
        self.post(vec![
            reports.message(WindowState::Failed, attempt, Some(cause)),
            gst::message::Error::builder(gst::StreamError::Failed, error)
                .src(&*self.obj())
                .build(),
        ]);
    }

    fn src_loop(&self) {
        let mut guard = self.state.lock().unwrap();
        let output = loop {
            let Some(state) = guard.as_mut().filter(|s| !s.flushing && !s.failed) else {
                drop(guard);
                let _ = self.srcpad.pause_task();
                return;
            };
            let settled = state.settled_below();
            if let Some(output) = state.composer.pop_ready(settled) {
                break output;
            }
            guard = self.changed.wait(guard).unwrap();
        };
        drop(guard);
        let flow = match output {
            crate::stream::composer::Output::Frame(buffer) => self.srcpad.push(buffer),
            crate::stream::composer::Output::Event(event) => {
                let eos = event.type_() == gst::EventType::Eos;
                self.srcpad.push_event(event);
                if eos {
                    Err(gst::FlowError::Eos)
                } else {
                    Ok(gst::FlowSuccess::Ok)
                }
            }
        };
        let Err(err) = flow else {
            return;
        };
        if let Some(state) = self.state.lock().unwrap().as_mut()
            && err != gst::FlowError::Eos
        {
            state.downstream = Err(err);
        }
        self.changed.notify_all();
        if err == gst::FlowError::Eos {
            // Keep running: nothing more comes until a flush restarts the stream.
            return;
        }
        if !matches!(err, gst::FlowError::Flushing) {
            gst::element_imp_error!(
                self,
                gst::StreamError::Failed,
                ("Internal data stream error."),
                ["streaming stopped, reason {err:?}"]
            );
        }
        let _ = self.srcpad.pause_task();
    }

    fn start_task(&self) -> Result<(), glib::BoolError> {
        let this = self.ref_counted();
        self.srcpad.start_task(move || this.src_loop())
    }

    /// Ends the current run: its last window is planned and submitted.
    fn finish_run(&self, guard: Guard<'_>) -> Result<(), gst::FlowError> {
        let mut guard = guard;
        let state = stream_state(&mut guard)?;
        let last = state.run.as_mut().and_then(|run| run.planner.finish());
        if let Some(window) = last {
            let inputs = state.composer.plan(window);
            drop(self.submit(guard, window, inputs)?);
        }
        Ok(())
    }

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::FlowError> {
        let info = VideoInfo::from_caps(caps).map_err(|_| gst::FlowError::NotNegotiated)?;
        self.finish_run(self.state.lock().unwrap())?;
        let mut guard = self.state.lock().unwrap();
        let state = stream_state(&mut guard)?;
        let (origin, first_index) = state.run.as_ref().map_or((0, 0), |run| {
            (run.planner.next_origin(), run.planner.next_index())
        });
        let input = Size::new(info.width(), info.height());
        let send_size = choose_size(input, &state.capabilities.sizes);
        gst::info!(
            CAT,
            imp = self,
            "{input} frames go to {} at {send_size}",
            state.backend.name()
        );
        state.run = Some(Run {
            info,
            planner: state.windowing.planner(origin, first_index),
            send_size,
        });
        Ok(())
    }

    fn queue_event(&self, event: gst::Event) -> bool {
        let mut guard = self.state.lock().unwrap();
        let Ok(state) = stream_state(&mut guard) else {
            return false;
        };
        state.composer.push_event(event);
        drop(guard);
        self.changed.notify_all();
        true
    }

    fn sink_event(&self, pad: &gst::Pad, event: gst::Event) -> bool {
        use gst::EventView;
        if event.is_serialized() {
            // Data may arrive while the model loads: it waits for the backend.
            drop(self.ready_state());
        }
        match event.view() {
            EventView::FlushStart(_) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.flushing = true;
                    state.cancel_jobs();
                }
                self.changed.notify_all();
                let forwarded = self.srcpad.push_event(event);
                let _ = self.srcpad.pause_task();
                forwarded
            }
            EventView::FlushStop(_) => {
                if let Some(state) = self.state.lock().unwrap().as_mut() {
                    state.restart();
                    state.flushing = false;
                }
                let forwarded = self.srcpad.push_event(event);
                forwarded && self.start_task().is_ok()
            }
            EventView::Caps(c) => {
                let caps = c.caps_owned();
                match self.set_caps(&caps) {
                    Ok(()) => self.queue_event(event),
                    Err(err) => {
                        gst::warning!(CAT, imp = self, "cannot take caps {caps}: {err:?}");
                        false
                    }
                }
            }
            EventView::Eos(_) => {
                if self.finish_run(self.state.lock().unwrap()).is_err() {
                    return false;
                }
                self.queue_event(event)
            }
            _ if event.is_serialized() => self.queue_event(event),
            _ => gst::Pad::event_default(pad, Some(&*self.obj()), event),
        }
    }

    fn sink_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            // Frames stay held for a whole window: never let upstream allocate from a
            // downstream pool it could run dry. Strides of our own choosing are fine.
            gst::QueryViewMut::Allocation(q) => {
                q.add_allocation_meta::<gst_video::VideoMeta>(None);
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    fn src_query(&self, pad: &gst::Pad, query: &mut gst::QueryRef) -> bool {
        match query.view_mut() {
            gst::QueryViewMut::Latency(q) => {
                let mut upstream = gst::query::Latency::new();
                if !self.sinkpad.peer_query(&mut upstream) {
                    return false;
                }
                let (live, min, max) = upstream.result();
                let ours = self.added_latency();
                q.set(live, min + ours, max.map(|m| m + ours));
                true
            }
            _ => gst::Pad::query_default(pad, Some(&*self.obj()), query),
        }
    }

    /// `window-frames` frame durations plus `processing-latency`.
    fn added_latency(&self) -> gst::ClockTime {
        let settings = self.settings.lock().unwrap().clone();
        let fps = self
            .state
            .lock()
            .unwrap()
            .as_ref()
            .and_then(|s| s.run.as_ref())
            .map(|run| run.info.fps())
            .filter(|fps| fps.numer() > 0)
            .unwrap_or(super::job::SEND_RATE);
        let window = gst::ClockTime::SECOND
            .mul_div_floor(
                settings.window_frames as u64 * fps.denom() as u64,
                fps.numer() as u64,
            )
            .unwrap_or(gst::ClockTime::ZERO);
        window + settings.processing_latency()
    }

    fn src_activate_mode(
        &self,
        mode: gst::PadMode,
        active: bool,
    ) -> Result<(), gst::LoggableError> {
        if mode != gst::PadMode::Push {
            return Err(gst::loggable_error!(CAT, "wanedit's src pad only pushes"));
        }
        if active {
            self.start_task()
                .map_err(|e| gst::loggable_error!(CAT, "cannot start the src task: {e}"))
        } else {
            self.stop_streaming();
            self.srcpad
                .stop_task()
                .map_err(|e| gst::loggable_error!(CAT, "cannot stop the src task: {e}"))
        }
    }
}

#[glib::object_subclass]
impl ObjectSubclass for WanEdit {
    const NAME: &'static str = "GstWanEdit";
    type Type = super::WanEdit;
    type ParentType = gst::Element;

    fn with_class(klass: &Self::Class) -> Self {
        let sinkpad = gst::Pad::builder_from_template(&klass.pad_template("sink").unwrap())
            .chain_function(|_pad, parent, buffer| {
                WanEdit::catch_panic_pad_function(
                    parent,
                    || Err(gst::FlowError::Error),
                    |this| this.sink_chain(buffer),
                )
            })
            .event_function(|pad, parent, event| {
                WanEdit::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_event(pad, event),
                )
            })
            .query_function(|pad, parent, query| {
                WanEdit::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.sink_query(pad, query),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build();
        let srcpad = gst::Pad::builder_from_template(&klass.pad_template("src").unwrap())
            .activatemode_function(|_pad, parent, mode, active| {
                WanEdit::catch_panic_pad_function(
                    parent,
                    || Err(gst::loggable_error!(CAT, "panic in activating the src pad")),
                    |this| this.src_activate_mode(mode, active),
                )
            })
            .query_function(|pad, parent, query| {
                WanEdit::catch_panic_pad_function(
                    parent,
                    || false,
                    |this| this.src_query(pad, query),
                )
            })
            .flags(gst::PadFlags::PROXY_CAPS)
            .build();
        Self {
            sinkpad,
            srcpad,
            settings: Mutex::new(Settings::default()),
            custom_backend: Mutex::new(None),
            state: Mutex::new(None),
            changed: Condvar::new(),
            loading: AtomicBool::new(false),
            load_generation: AtomicU64::new(0),
        }
    }
}

impl ObjectImpl for WanEdit {
    fn properties() -> &'static [glib::ParamSpec] {
        static PROPERTIES: LazyLock<Vec<glib::ParamSpec>> = LazyLock::new(properties::specs);
        PROPERTIES.as_ref()
    }

    fn set_property(&self, _id: usize, value: &glib::Value, pspec: &glib::ParamSpec) {
        let name = pspec.name();
        if name != "api-key" {
            gst::debug!(CAT, imp = self, "setting {name} to {value:?}");
        }
        properties::set(&mut self.settings.lock().unwrap(), name, value);
        if name == "window-frames" {
            let settings = self.settings.lock().unwrap().clone();
            if let Err(e) = settings.validate() {
                gst::warning!(CAT, imp = self, "{e}; going to PAUSED will fail");
            }
        }
        if matches!(name, "window-frames" | "processing-latency") {
            let _ = self
                .obj()
                .post_message(gst::message::Latency::builder().src(&*self.obj()).build());
        }
    }

    fn property(&self, _id: usize, pspec: &glib::ParamSpec) -> glib::Value {
        properties::get(&self.settings.lock().unwrap(), pspec.name())
    }

    fn constructed(&self) {
        self.parent_constructed();
        let obj = self.obj();
        obj.add_pad(&self.sinkpad).unwrap();
        obj.add_pad(&self.srcpad).unwrap();
    }
}

impl GstObjectImpl for WanEdit {}

impl ElementImpl for WanEdit {
    fn metadata() -> Option<&'static gst::subclass::ElementMetadata> {
        static METADATA: LazyLock<gst::subclass::ElementMetadata> = LazyLock::new(|| {
            gst::subclass::ElementMetadata::new(
                "Wan video edit",
                "Filter/Effect/Video",
                "Edits video from a plain instruction with the Wan video diffusion family, \
                 keeping frames, timestamps and metadata",
                "wanedit developers",
            )
        });
        Some(&*METADATA)
    }

    fn pad_templates() -> &'static [gst::PadTemplate] {
        static TEMPLATES: LazyLock<Vec<gst::PadTemplate>> = LazyLock::new(|| {
            let caps = gst_video::VideoCapsBuilder::new()
                .format_list(super::FORMATS.iter().copied())
                .build();
            vec![
                gst::PadTemplate::new(
                    "src",
                    gst::PadDirection::Src,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
                gst::PadTemplate::new(
                    "sink",
                    gst::PadDirection::Sink,
                    gst::PadPresence::Always,
                    &caps,
                )
                .unwrap(),
            ]
        });
        TEMPLATES.as_ref()
    }

    fn change_state(
        &self,
        transition: gst::StateChange,
    ) -> Result<gst::StateChangeSuccess, gst::StateChangeError> {
        let mut start = Start::Ready;
        match transition {
            gst::StateChange::ReadyToPaused => match self.start() {
                Ok(s) => start = s,
                Err(e) => {
                    gst::element_imp_error!(self, gst::LibraryError::Settings, ("{e}"));
                    return Err(gst::StateChangeError);
                }
            },
            // READY->READY: the application left an asynchronous READY->PAUSED early.
            gst::StateChange::PausedToReady | gst::StateChange::ReadyToReady => {
                self.stop_streaming()
            }
            _ => {}
        }
        let mut result = self.parent_change_state(transition);
        if let (Ok(_), Start::Load(config)) = (&result, start) {
            result = match self.start_loading(*config) {
                Ok(()) => Ok(gst::StateChangeSuccess::Async),
                Err(e) => {
                    gst::element_imp_error!(self, gst::LibraryError::Settings, ("{e}"));
                    Err(gst::StateChangeError)
                }
            };
        }
        let stopped = match transition {
            gst::StateChange::PausedToReady | gst::StateChange::ReadyToReady => true,
            gst::StateChange::ReadyToPaused => result.is_err(),
            _ => false,
        };
        if stopped {
            *self.state.lock().unwrap() = None;
        }
        result
    }
}
