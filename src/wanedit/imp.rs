//! The GStreamer glue of `wanedit`: pads, properties, events, queries, state changes.
//!
//! The sink pad's chain function holds each frame, plans windows and submits jobs (waiting
//! while `max-in-flight` jobs run, `windows.rs`); jobs run on the plugin's tokio runtime
//! (`job.rs`) and deliver their frames back; a task on the src pad pushes frames and
//! events out in input order once they are final (`output.rs`). The backend is made or
//! loaded at READY->PAUSED (`lifecycle.rs`, `load.rs`).

use std::sync::atomic::{AtomicBool, AtomicU64};
use std::sync::{Arc, Condvar, LazyLock, Mutex, MutexGuard};

use gst::glib;
use gst::prelude::*;
use gst::subclass::prelude::*;
use gst_video::VideoInfo;
use gst_video::prelude::*;

use super::properties;
use super::settings::Settings;
use super::state::{Run, State};
use crate::backend::hosted::Resolve;
use crate::backend::{Backend, BackendConfig, BackendKind, Size};
use crate::stream::blend::Samples;
use crate::stream::geometry::choose_size;
use crate::stream::mask::StreamMask;

pub(super) static CAT: LazyLock<gst::DebugCategory> = LazyLock::new(|| {
    gst::DebugCategory::new(
        "wanedit",
        gst::DebugColorFlags::empty(),
        Some("Edits video with Wan video diffusion models"),
    )
});

pub struct WanEdit {
    pub(super) sinkpad: gst::Pad,
    pub(super) srcpad: gst::Pad,
    pub(super) settings: Mutex<Settings>,
    pub(super) custom_backend: Mutex<Option<Arc<dyn Backend>>>,
    /// `None` outside PAUSED and PLAYING.
    pub(super) state: Mutex<Option<State>>,
    /// Signalled whenever a job finishes, a frame or event is held, flushing starts, or
    /// a background load ends.
    pub(super) changed: Condvar,
    /// A backend is being built in the background (see `load`); changed with `state`
    /// locked.
    pub(super) loading: AtomicBool,
    /// Bumped whenever a background load is started or abandoned, so that a load that
    /// ends after the element left PAUSED is dropped.
    pub(super) load_generation: AtomicU64,
    /// The `mask` read at the last READY->PAUSED, for the stream state made then.
    pub(super) mask: Mutex<Option<StreamMask>>,
}

/// How READY->PAUSED goes on once the settings are checked.
pub(super) enum Start {
    /// The backend is ready and the stream state made.
    Ready,
    /// The backend loads a model: it is built in the background.
    Load(Box<BackendConfig>),
}

pub(super) type Guard<'a> = MutexGuard<'a, Option<State>>;

pub(super) fn stream_state<'a>(guard: &'a mut Guard<'_>) -> Result<&'a mut State, gst::FlowError> {
    guard.as_mut().ok_or(gst::FlowError::Flushing)
}

impl WanEdit {
    pub fn set_backend(&self, backend: Arc<dyn Backend>) {
        *self.custom_backend.lock().unwrap() = Some(backend);
        self.settings.lock().unwrap().backend = BackendKind::Custom;
    }

    pub fn set_resolver(&self, resolver: Arc<dyn Resolve>) {
        self.settings.lock().unwrap().resolver = Some(resolver);
    }

    pub(super) fn post(&self, messages: Vec<gst::Message>) {
        for m in messages {
            let _ = self.obj().post_message(m);
        }
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
        if buffer
            .video_flags()
            .contains(gst_video::VideoBufferFlags::INTERLACED)
        {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("a buffer flagged interlaced in a progressive stream: put deinterlace in \
                  front of wanedit")
            );
            return Err(gst::FlowError::NotNegotiated);
        }
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

    fn set_caps(&self, caps: &gst::Caps) -> Result<(), gst::FlowError> {
        // Read from the caps themselves: some interlaced caps (alternate fields) are not
        // even a VideoInfo, and they deserve the same clear answer.
        let mode = caps
            .structure(0)
            .and_then(|s| s.get::<&str>("interlace-mode").ok())
            .unwrap_or("progressive");
        if mode != "progressive" {
            // The model sees whole frames in time: fields woven into one frame would be
            // edited as combing. A clear error beats a picture that looks broken.
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                ("wanedit takes progressive video only, not interlace-mode={mode}: put \
                     deinterlace in front of wanedit")
            );
            return Err(gst::FlowError::NotNegotiated);
        }
        let info = VideoInfo::from_caps(caps).map_err(|_| gst::FlowError::NotNegotiated)?;
        let Some(samples) = Samples::for_format(info.format()) else {
            gst::element_imp_error!(
                self,
                gst::StreamError::Format,
                (
                    "wanedit cannot blend {:?} video: put videoconvert in front",
                    info.format()
                )
            );
            return Err(gst::FlowError::NotNegotiated);
        };
        self.finish_run(self.state.lock().unwrap())?;
        let mut guard = self.state.lock().unwrap();
        let state = stream_state(&mut guard)?;
        let (origin, first_index) = state.run.as_ref().map_or((0, 0), |run| {
            (run.planner.next_origin(), run.planner.next_index())
        });
        let input = Size::new(info.width(), info.height());
        let send_size = choose_size(input, &state.capabilities.sizes);
        let mask = match state.mask.as_ref().map(|m| m.for_caps(&info, send_size)) {
            None => None,
            Some(Ok(mask)) => Some(mask),
            Some(Err(e)) => {
                gst::element_imp_error!(self, gst::StreamError::Format, ("{e}"));
                return Err(gst::FlowError::NotNegotiated);
            }
        };
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
            scaled: Default::default(),
            samples,
            anchor: None,
            mask,
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
            mask: Mutex::new(None),
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
        if let Some(shown) = properties::shown(pspec, value) {
            gst::debug!(CAT, imp = self, "setting {name} to {shown}");
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
                "Edits raw video from a text instruction with Wan video diffusion models, \
                 in overlapping windows crossfaded together, in-process or through a \
                 hosted provider, keeping every frame, its timestamps and its metadata",
                "The gst-plugin-wanedit contributors",
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
