//! Cuts a stream of frames into overlapping windows (DESIGN.md section 3).

/// A span of frames `[start, start + len)` in stream frame numbers.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Window {
    /// Counts windows from 0 since the planner was made.
    pub index: u64,
    pub start: u64,
    pub len: u64,
}

impl Window {
    pub fn end(&self) -> u64 {
        self.start + self.len
    }
}

/// Plans windows of `window` frames with `overlap` frames shared between neighbours.
///
/// Regular window `k` covers `[origin + k*S, origin + k*S + W)` with `S = W - O`. At the end
/// of a run ([`WindowPlanner::finish`]) the frames not yet in a window form one last
/// window that ends on the last frame; a run shorter than `W` is one short window.
#[derive(Debug, Clone)]
pub struct WindowPlanner {
    window: u64,
    stride: u64,
    origin: u64,
    received: u64,
    /// Windows handed out so far.
    planned: u64,
    next_index: u64,
    /// End of the last window handed out (relative to `origin`), 0 before the first.
    covered: u64,
    finished: bool,
}

impl WindowPlanner {
    /// Plans a run that starts at frame `origin`, numbering its windows from `first_index`.
    /// `overlap < window` must hold (the element checks it before building a planner).
    pub fn new(window: u32, overlap: u32, origin: u64, first_index: u64) -> Self {
        assert!(overlap < window, "overlap must be smaller than the window");
        Self {
            window: window.into(),
            stride: (window - overlap).into(),
            origin,
            received: 0,
            planned: 0,
            next_index: first_index,
            covered: 0,
            finished: false,
        }
    }

    /// Frame number the next run starts at, once this one is finished.
    pub fn next_origin(&self) -> u64 {
        self.origin + self.received
    }

    pub fn received(&self) -> u64 {
        self.received
    }

    /// Index the first window of the next run gets.
    pub fn next_index(&self) -> u64 {
        self.next_index
    }

    fn next_regular_start(&self) -> u64 {
        self.planned * self.stride
    }

    fn window_at(&mut self, start: u64, len: u64) -> Window {
        let w = Window {
            index: self.next_index,
            start: self.origin + start,
            len,
        };
        self.next_index += 1;
        self.planned += 1;
        self.covered = start + len;
        w
    }

    /// Counts one more frame; returns the window it completes, if any.
    pub fn push_frame(&mut self) -> Option<Window> {
        debug_assert!(!self.finished);
        self.received += 1;
        let start = self.next_regular_start();
        (self.received == start + self.window).then(|| self.window_at(start, self.window))
    }

    /// Ends the run: returns the last window when frames are left outside every window.
    pub fn finish(&mut self) -> Option<Window> {
        if self.finished {
            return None;
        }
        self.finished = true;
        if self.received == self.covered {
            return None;
        }
        let start = self.received.saturating_sub(self.window);
        Some(self.window_at(start, self.received - start))
    }

    /// Frames numbered below this are in no window planned in the future.
    ///
    /// A future window starts at the next regular start, or (as the last window of the run)
    /// `W` frames before the run's end, which is at least `W` frames before what has
    /// arrived. So a frame is final `W` frames after it arrived at the latest.
    pub fn settled_below(&self) -> u64 {
        if self.finished {
            return self.origin + self.received;
        }
        let last_window_start = self.received.saturating_sub(self.window);
        self.origin + self.next_regular_start().min(last_window_start)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(n: u64, w: u32, o: u32) -> Vec<(u64, u64)> {
        let mut p = WindowPlanner::new(w, o, 0, 0);
        let mut out: Vec<_> = (0..n).filter_map(|_| p.push_frame()).collect();
        out.extend(p.finish());
        out.iter().map(|w| (w.start, w.len)).collect()
    }

    #[test]
    fn regular_windows_step_by_stride() {
        assert_eq!(plan(13, 5, 1), vec![(0, 5), (4, 5), (8, 5)]);
    }

    #[test]
    fn leftover_frames_form_a_last_window_ending_on_the_last_frame() {
        assert_eq!(plan(15, 5, 1), vec![(0, 5), (4, 5), (8, 5), (10, 5)]);
    }

    #[test]
    fn short_stream_is_one_short_window() {
        assert_eq!(plan(3, 81, 16), vec![(0, 3)]);
        assert_eq!(plan(0, 81, 16), vec![]);
    }

    #[test]
    fn no_overlap() {
        assert_eq!(plan(10, 5, 0), vec![(0, 5), (5, 5)]);
        assert_eq!(plan(11, 5, 0), vec![(0, 5), (5, 5), (6, 5)]);
    }

    #[test]
    fn every_frame_is_covered_and_settled_frames_stay_out_of_later_windows() {
        for (w, o) in [(5, 0), (5, 4), (9, 3), (17, 16), (81, 16)] {
            for n in 0..120u64 {
                let mut p = WindowPlanner::new(w, o, 7, 3);
                let mut windows = vec![];
                let mut settled = vec![];
                for _ in 0..n {
                    windows.extend(p.push_frame());
                    settled.push((windows.len(), p.settled_below()));
                }
                windows.extend(p.finish());
                for f in 7..7 + n {
                    assert!(windows.iter().any(|w| w.start <= f && f < w.end()));
                }
                for (planned, bound) in settled {
                    for w in &windows[planned..] {
                        assert!(w.start >= bound, "w={w:?} bound={bound}");
                    }
                }
                assert_eq!(p.settled_below(), 7 + n);
            }
        }
    }
}
