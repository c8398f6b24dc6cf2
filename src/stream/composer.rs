//! Holds the stream in order while its windows are edited, and composes the output.
//!
//! Input frames and serialized events wait in one queue, in arrival order. Edited windows
//! are applied in window order: a window's frames either become a frame's picture or are
//! crossfaded into the picture the earlier windows left (over the span they share). A
//! frame leaves the queue once no window still to come covers it.
//!
//! An input frame's pixels are needed only until every window that covers it is planned:
//! each window's job holds its own references, for the backend and for passing through.
//! From then on the queue keeps only the frame's stamp (timestamps, flags, metas), so a
//! window finished behind a slower one holds its edited frames and not its inputs too.

use std::collections::{BTreeMap, VecDeque};

use gst_video::VideoMeta;

use super::blend::{BlendMode, Samples, blend};
use super::planner::Window;

enum Item {
    /// `input` is the input buffer, or once released an empty buffer with its stamp.
    Frame {
        number: u64,
        input: gst::Buffer,
    },
    Event(gst::Event),
}

/// What leaves the composer, in stream order.
#[derive(Debug)]
pub enum Output {
    Frame(gst::Buffer),
    Event(gst::Event),
}

#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("window {index} has {got} edited frames for {expected} input frames")]
    FrameCount {
        index: u64,
        got: usize,
        expected: u64,
    },
    #[error("window {index} frame {frame} has {got} bytes where the composed frame has {expected}")]
    Layout {
        index: u64,
        frame: u64,
        got: usize,
        expected: usize,
    },
    #[error("cannot map an edited frame: {0}")]
    Map(#[from] gst::glib::BoolError),
}

#[derive(Default)]
pub struct Composer {
    queue: VecDeque<Item>,
    /// Windows planned and not yet applied, in order.
    planned: VecDeque<Window>,
    /// Edited frames of windows that finished before an earlier window.
    finished: BTreeMap<u64, (Vec<gst::Buffer>, Samples)>,
    /// Composed pictures of frames still in the queue, in the output's default layout.
    pictures: BTreeMap<u64, gst::Buffer>,
    /// End of the frames the applied windows cover.
    applied_end: u64,
    /// End of the frames the planned windows cover.
    planned_end: u64,
    /// Frames below this hold only their stamp.
    released_below: u64,
}

impl Composer {
    pub fn push_frame(&mut self, number: u64, input: gst::Buffer) {
        self.queue.push_back(Item::Frame { number, input });
    }

    pub fn push_event(&mut self, event: gst::Event) {
        self.queue.push_back(Item::Event(event));
    }

    /// Frames held, waiting for their windows.
    pub fn frames_held(&self) -> usize {
        self.queue
            .iter()
            .filter(|i| matches!(i, Item::Frame { .. }))
            .count()
    }

    /// The oldest window planned and not yet applied: the frames of every window after it
    /// wait for it, edited or not.
    pub fn oldest_pending(&self) -> Option<u64> {
        self.planned.front().map(|w| w.index)
    }

    pub fn is_empty(&self) -> bool {
        self.queue.is_empty()
    }

    /// Registers a window and returns references to its input frames.
    pub fn plan(&mut self, window: Window) -> Vec<gst::Buffer> {
        self.planned.push_back(window);
        self.planned_end = self.planned_end.max(window.end());
        self.queue
            .iter()
            .filter_map(|item| match item {
                Item::Frame { number, input } if (window.start..window.end()).contains(number) => {
                    Some(input.clone())
                }
                _ => None,
            })
            .collect()
    }

    /// Stores a window's edited frames (one per input frame, in the output's default
    /// layout, whose samples are stored as `samples` says) and applies every window that
    /// can now be applied in order.
    pub fn finish(
        &mut self,
        index: u64,
        frames: Vec<gst::Buffer>,
        samples: Samples,
        mode: BlendMode,
    ) -> Result<(), ComposeError> {
        self.finished.insert(index, (frames, samples));
        while let Some(window) = self.planned.front().copied() {
            let Some((frames, samples)) = self.finished.remove(&window.index) else {
                break;
            };
            self.planned.pop_front();
            self.apply(window, frames, samples, mode)?;
        }
        Ok(())
    }

    fn apply(
        &mut self,
        window: Window,
        frames: Vec<gst::Buffer>,
        samples: Samples,
        mode: BlendMode,
    ) -> Result<(), ComposeError> {
        if frames.len() as u64 != window.len {
            return Err(ComposeError::FrameCount {
                index: window.index,
                got: frames.len(),
                expected: window.len,
            });
        }
        let shared_end = self.applied_end.max(window.start);
        let span = shared_end - window.start;
        for (number, edited) in (window.start..).zip(frames) {
            match self.pictures.get_mut(&number) {
                Some(picture) if number < shared_end => {
                    let weight = mode.weight(number - window.start, span);
                    let picture = picture.make_mut();
                    let mut dst = picture.map_writable()?;
                    let src = edited.map_readable()?;
                    if dst.len() != src.len() {
                        return Err(ComposeError::Layout {
                            index: window.index,
                            frame: number,
                            got: src.len(),
                            expected: dst.len(),
                        });
                    }
                    blend(&mut dst, &src, weight, samples);
                }
                _ => {
                    self.pictures.insert(number, edited);
                }
            }
        }
        self.applied_end = self.applied_end.max(window.end());
        Ok(())
    }

    /// Keeps only the stamp of each input frame numbered below `settled_below` (in no
    /// window planned from now on) whose window is planned.
    pub fn release_inputs(&mut self, settled_below: u64) {
        let limit = settled_below.min(self.planned_end);
        if limit <= self.released_below {
            return;
        }
        // Frames arrive in order: the ones not yet released are at the back.
        for item in self.queue.iter_mut().rev() {
            let Item::Frame { number, input } = item else {
                continue;
            };
            if *number < self.released_below {
                break;
            }
            if *number < limit {
                let mut stamp = gst::Buffer::new();
                copy_stamp(input, stamp.get_mut().expect("a new buffer is writable"));
                *input = stamp;
            }
        }
        self.released_below = limit;
    }

    /// The next item of the output, if it is final: events as soon as they reach the front,
    /// a frame once it is below `settled_below` (no future window covers it) and every
    /// planned window that covers it has been applied.
    pub fn pop_ready(&mut self, settled_below: u64) -> Option<Output> {
        match self.queue.front()? {
            Item::Event(_) => {}
            Item::Frame { number, .. } => {
                let number = *number;
                let pending = self.planned.front().is_some_and(|w| w.start <= number);
                if number >= settled_below || pending || !self.pictures.contains_key(&number) {
                    return None;
                }
            }
        }
        Some(match self.queue.pop_front()? {
            Item::Event(event) => Output::Event(event),
            Item::Frame { number, input } => {
                let picture = self.pictures.remove(&number).expect("checked above");
                Output::Frame(with_picture(input, picture))
            }
        })
    }
}

/// The input buffer with its pixels replaced: timestamps, offsets, flags and metas stay.
fn with_picture(input: gst::Buffer, mut picture: gst::Buffer) -> gst::Buffer {
    copy_stamp(&input, picture.make_mut());
    picture
}

/// Copies a frame's timestamps, offsets, flags and metas from `input` onto `out`.
fn copy_stamp(input: &gst::BufferRef, out: &mut gst::BufferRef) {
    let copy =
        gst::BufferCopyFlags::FLAGS | gst::BufferCopyFlags::TIMESTAMPS | gst::BufferCopyFlags::META;
    if input.copy_into(out, copy, ..).is_err() {
        // Timestamps and flags at least; only metas that refuse a copy are lost.
        let _ = input.copy_into(out, copy - gst::BufferCopyFlags::META, ..);
    }
    out.unset_flags(gst::BufferFlags::all());
    out.set_flags(input.flags());
    // The picture is in the default layout; a VideoMeta would describe the input's.
    while let Some(meta) = out.meta_mut::<VideoMeta>() {
        if meta.remove().is_err() {
            break;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(value: u8) -> gst::Buffer {
        gst::Buffer::from_slice(vec![value; 4])
    }

    fn input(pts: u64) -> gst::Buffer {
        let mut b = gst::Buffer::with_size(4).unwrap();
        b.get_mut()
            .unwrap()
            .set_pts(gst::ClockTime::from_nseconds(pts));
        b
    }

    fn first_byte(out: Output) -> (u64, u8) {
        match out {
            Output::Frame(b) => (b.pts().unwrap().nseconds(), b.map_readable().unwrap()[0]),
            Output::Event(_) => panic!("expected a frame"),
        }
    }

    #[test]
    fn windows_finishing_out_of_order_are_applied_in_order_and_blended() {
        gst::init().unwrap();
        let mut c = Composer::default();
        for n in 0..5 {
            c.push_frame(n, input(n));
        }
        let w0 = Window {
            index: 0,
            start: 0,
            len: 3,
        };
        let w1 = Window {
            index: 1,
            start: 2,
            len: 3,
        };
        assert_eq!(c.plan(w0).len(), 3);
        assert_eq!(c.plan(w1).len(), 3);
        c.finish(1, vec![frame(200); 3], Samples::U8, BlendMode::Linear)
            .unwrap();
        assert!(c.pop_ready(5).is_none(), "window 0 is not done");
        c.finish(0, vec![frame(100); 3], Samples::U8, BlendMode::Linear)
            .unwrap();
        let out: Vec<_> = std::iter::from_fn(|| c.pop_ready(5))
            .map(first_byte)
            .collect();
        // Frame 2 is shared: (1 - 1/2) * 100 + 1/2 * 200.
        assert_eq!(out, vec![(0, 100), (1, 100), (2, 150), (3, 200), (4, 200)]);
        assert!(c.is_empty());
    }

    #[test]
    fn frames_wait_until_settled_and_events_keep_their_place() {
        gst::init().unwrap();
        let mut c = Composer::default();
        c.push_frame(0, input(0));
        c.push_event(gst::event::Eos::new());
        c.plan(Window {
            index: 0,
            start: 0,
            len: 1,
        });
        c.finish(0, vec![frame(7)], Samples::U8, BlendMode::Cut)
            .unwrap();
        assert!(c.pop_ready(0).is_none());
        assert_eq!(first_byte(c.pop_ready(1).unwrap()), (0, 7));
        assert!(matches!(c.pop_ready(1), Some(Output::Event(_))));
    }

    #[test]
    fn settled_inputs_are_let_go_and_keep_their_stamp() {
        gst::init().unwrap();
        let mut c = Composer::default();
        let inputs: Vec<_> = (0..4)
            .map(|n| {
                let mut b = input(n * 10);
                gst::meta::ReferenceTimestampMeta::add(
                    b.get_mut().unwrap(),
                    &gst::Caps::new_empty_simple("timestamp/x-test"),
                    gst::ClockTime::from_seconds(n),
                    None,
                );
                b
            })
            .collect();
        for (n, b) in inputs.iter().enumerate() {
            c.push_frame(n as u64, b.clone());
        }
        let window = Window {
            index: 0,
            start: 0,
            len: 3,
        };
        drop(c.plan(window));
        // Frames 0 and 1 are in no window to come; 2 may be; 3 is in none planned yet.
        c.release_inputs(2);
        // A buffer is writable when no one else holds it.
        let only_ours: Vec<_> = inputs.iter().map(|b| b.is_writable()).collect();
        assert_eq!(only_ours, vec![true, true, false, false]);
        c.finish(0, vec![frame(9); 3], Samples::U8, BlendMode::Linear)
            .unwrap();
        let out: Vec<_> = std::iter::from_fn(|| c.pop_ready(2)).collect();
        assert_eq!(out.len(), 2);
        for (n, out) in out.into_iter().enumerate() {
            let Output::Frame(b) = out else {
                panic!("expected a frame")
            };
            assert_eq!(b.pts(), Some(gst::ClockTime::from_nseconds(n as u64 * 10)));
            assert_eq!(b.map_readable().unwrap()[0], 9);
            let meta = b.meta::<gst::meta::ReferenceTimestampMeta>().unwrap();
            assert_eq!(meta.timestamp(), gst::ClockTime::from_seconds(n as u64));
        }
    }

    #[test]
    fn a_window_with_the_wrong_frame_count_is_an_error() {
        gst::init().unwrap();
        let mut c = Composer::default();
        c.push_frame(0, input(0));
        c.plan(Window {
            index: 0,
            start: 0,
            len: 1,
        });
        let err = c
            .finish(0, vec![], Samples::U8, BlendMode::Linear)
            .unwrap_err();
        assert_eq!(
            err.to_string(),
            "window 0 has 0 edited frames for 1 input frames"
        );
    }
}
