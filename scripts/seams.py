#!/usr/bin/env python3
"""How much an edited stream jumps where its windows join.

For an output video and the element's window plan (`window-frames` W, `overlap-frames` O),
prints the mean absolute change between consecutive frames at the window boundaries
(from the last frame before each overlap to its first, through the overlap, and from its
last frame to the next) over the median of the same change within windows, where one
window's edit alone makes the frames. 1.0 means the joins change no more than the motion
inside a window; a crossfade between two different edits shows as a ratio above it.

Usage:
    scripts/seams.py VIDEO --size WxH --window W --overlap O
    scripts/seams.py FRAMES.rgb --raw --size WxH --window W --overlap O

VIDEO is decoded with gst-launch-1.0 (any file GStreamer plays) and scaled to WxH;
FRAMES.rgb is packed 8-bit RGB frames of WxH, as `... ! video/x-raw,format=RGB !
filesink` writes them. Only the Python standard library is needed. Figures made with
it: docs/seams.md.
"""

import argparse
import os
import statistics
import subprocess
import sys
import tempfile


def decode(path, width, height):
    """Decodes a video to packed RGB frames of width x height with GStreamer."""
    with tempfile.TemporaryDirectory() as tmp:
        raw = os.path.join(tmp, "frames.rgb")
        subprocess.run(
            ["gst-launch-1.0", "-q", "filesrc", f"location={path}", "!", "decodebin", "!",
             "videoconvert", "!", "videoscale", "!",
             f"video/x-raw,format=RGB,width={width},height={height}", "!",
             "filesink", f"location={raw}"],
            check=True,
        )
        with open(raw, "rb") as f:
            return f.read()


def frames_of(data, width, height):
    size = width * height * 3
    if len(data) % size:
        sys.exit(f"{len(data)} bytes are no whole number of {width}x{height} RGB frames")
    return [data[i : i + size] for i in range(0, len(data), size)]


def change(a, b):
    """Mean absolute difference of two frames, in 8-bit steps."""
    return sum(abs(x - y) for x, y in zip(a, b)) / len(a)


def boundary_steps(count, window, overlap):
    """The steps (i -> i+1) that touch an overlap: into it, through it, and out of it."""
    stride = window - overlap
    steps = set()
    start = stride
    while start + overlap <= count and overlap > 0:
        for i in range(start - 1, start + overlap):
            if 0 <= i < count - 1:
                steps.add(i)
        start += stride
    return steps


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("video")
    parser.add_argument("--window", type=int, required=True)
    parser.add_argument("--overlap", type=int, required=True)
    parser.add_argument("--size", required=True, help="WxH the frames are compared at")
    parser.add_argument("--raw", action="store_true", help="VIDEO is packed RGB frames")
    args = parser.parse_args()
    width, height = (int(v) for v in args.size.lower().split("x"))
    if args.raw:
        with open(args.video, "rb") as f:
            data = f.read()
    else:
        data = decode(args.video, width, height)
    frames = frames_of(data, width, height)
    if len(frames) < args.window + 2:
        sys.exit(f"{len(frames)} frames: too few for a window of {args.window} and its join")
    steps = [change(frames[i], frames[i + 1]) for i in range(len(frames) - 1)]
    at_joins = boundary_steps(len(frames), args.window, args.overlap)
    joins = [steps[i] for i in sorted(at_joins)]
    inside = [s for i, s in enumerate(steps) if i not in at_joins]
    if not joins or not inside:
        sys.exit("no window join, or nothing inside windows, in this plan")
    median_inside = statistics.median(inside)
    mean_joins = statistics.mean(joins)
    print(f"frames: {len(frames)} of {width}x{height}; W={args.window} O={args.overlap}")
    print(f"mean change at joins: {mean_joins:.3f} ({len(joins)} steps)")
    print(f"median change within windows: {median_inside:.3f} ({len(inside)} steps)")
    ratio = mean_joins / median_inside if median_inside else float("inf")
    print(f"seam ratio: {ratio:.3f}")


if __name__ == "__main__":
    main()
