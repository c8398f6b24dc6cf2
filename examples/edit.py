#!/usr/bin/env python3
"""Edits a video file with wanedit and keeps its audio: examples/edit.rs in Python.

    GST_PLUGIN_PATH=target/release python3 examples/edit.py in.mp4 out.mp4 \\
        --prompt "make it snow" [--backend replicate] [--keep-format] \\
        [--any-wanedit-property value ...]

Needs PyGObject and GStreamer's introspection data (Debian: python3-gi,
gir1.2-gstreamer-1.0) and the plugin built (cargo build --release).

The graph: filesrc ! decodebin, its video through videoconvert ! wanedit ! videoconvert !
I420 ! x264enc ! H.264 High, its audio (if any) through audioconvert ! avenc_aac, both
into mp4mux ! filesink. The video is written as H.264 High 4:2:0 8-bit, which every player
plays; --keep-format encodes the input's own format instead (10-bit, 4:2:2, 4:4:4).
"""

import sys

import gi

gi.require_version("Gst", "1.0")
from gi.repository import Gst  # noqa: E402

USAGE = (
    "usage: edit.py INPUT OUTPUT --prompt TEXT [--backend NAME] [--keep-format] "
    "[--PROPERTY VALUE ...]\n"
    "PROPERTY is any property of the wanedit element (gst-inspect-1.0 wanedit)."
)


class UsageError(Exception):
    pass


def parse_args(argv):
    """(input, output, keep_format, [(property, value)]) from the command line."""
    positional, properties, keep_format = [], [], False
    args = iter(argv)
    for arg in args:
        if arg in ("-h", "--help"):
            print(USAGE)
            sys.exit(0)
        if arg == "--keep-format":
            keep_format = True
        elif arg.startswith("--"):
            value = next(args, None)
            if value is None:
                raise UsageError(f"{arg} needs a value")
            properties.append((arg[2:], value))
        else:
            positional.append(arg)
    if len(positional) != 2:
        raise UsageError(USAGE)
    if not any(name == "prompt" for name, _ in properties):
        raise UsageError("--prompt is required: say what the edit should do")
    return positional[0], positional[1], keep_format, properties


def make(factory, **properties):
    element = Gst.ElementFactory.make(factory, None)
    if element is None:
        hint = (
            ": build the plugin (cargo build --release) and set GST_PLUGIN_PATH=target/release"
            if factory == "wanedit"
            else ""
        )
        raise UsageError(f"the GStreamer element {factory} is missing{hint}")
    for name, value in properties.items():
        element.set_property(name.replace("_", "-"), value)
    return element


def encoder_chain(keep_format):
    """From wanedit's raw video to H.264: High 4:2:0 8-bit unless the format is kept."""
    encoder = make("x264enc", quantizer=18)
    Gst.util_set_object_arg(encoder, "pass", "qual")
    Gst.util_set_object_arg(encoder, "speed-preset", "medium")
    if keep_format:
        return [make("videoconvert"), encoder]
    return [
        make("videoconvert"),
        make("capsfilter", caps=Gst.Caps.from_string("video/x-raw,format=I420")),
        encoder,
        make("capsfilter", caps=Gst.Caps.from_string("video/x-h264,profile=high")),
    ]


def link_many(elements):
    for a, b in zip(elements, elements[1:]):
        if not a.link(b):
            raise UsageError(f"cannot link {a.get_name()} to {b.get_name()}")


def build(input_path, output_path, keep_format, properties):
    pipeline = Gst.Pipeline.new("edit")
    src = make("filesrc", location=input_path)
    decode = make("decodebin")
    mux = make("mp4mux")
    sink = make("filesink", location=output_path)
    for element in (src, decode, mux, sink):
        pipeline.add(element)
    link_many([src, decode])
    link_many([mux, sink])

    edit = make("wanedit")
    for name, value in properties:
        if edit.find_property(name) is None:
            raise UsageError(f"wanedit has no property {name!r} (see gst-inspect-1.0 wanedit)")
        Gst.util_set_object_arg(edit, name, value)
    video = [make("videoconvert"), edit] + encoder_chain(keep_format)
    for element in video:
        pipeline.add(element)
    link_many(video + [mux])

    def pad_added(_decode, pad):
        caps = pad.get_current_caps() or pad.query_caps(None)
        kind = caps.get_structure(0).get_name()
        if kind.startswith("video/"):
            linked = pad.link(video[0].get_static_pad("sink")) == Gst.PadLinkReturn.OK
        elif kind.startswith("audio/"):
            linked = link_audio(pipeline, mux, pad)
        else:
            linked = False
        if not linked:
            print(f"skipping a {kind} stream of the input", file=sys.stderr)

    decode.connect("pad-added", pad_added)
    return pipeline


def link_audio(pipeline, mux, pad):
    """The audio keeps going to the same file: audioconvert ! audioresample ! avenc_aac."""
    audio = [make("audioconvert"), make("audioresample"), make("avenc_aac")]
    for element in audio:
        pipeline.add(element)
    link_many(audio + [mux])
    for element in audio:
        element.sync_state_with_parent()
    return pad.link(audio[0].get_static_pad("sink")) == Gst.PadLinkReturn.OK


def window_line(s):
    """One line from a wanedit-window message."""
    line = f"window {s.get_value('index')}: {s.get_value('state')} on {s.get_value('backend')}"
    if s.has_field("job-id") and s.get_value("job-id"):
        line += f" (job {s.get_value('job-id')})"
    if s.has_field("progress") and s.get_value("progress") >= 0:
        line += f" {s.get_value('progress') * 100:.0f}%"
    if s.has_field("elapsed"):
        line += f", {s.get_value('elapsed'):.1f} s"
    return line


def run(pipeline):
    """Plays the pipeline to its end; the error it stopped on, if any."""
    pipeline.set_state(Gst.State.PLAYING)
    bus = pipeline.get_bus()
    done = 0
    while True:
        message = bus.timed_pop(Gst.CLOCK_TIME_NONE)
        if message.type == Gst.MessageType.ELEMENT:
            s = message.get_structure()
            if s is not None and s.get_name() == "wanedit-window":
                done += s.get_value("state") == "done"
                print(window_line(s), file=sys.stderr)
        elif message.type == Gst.MessageType.WARNING:
            print(f"warning: {message.parse_warning()[0].message}", file=sys.stderr)
        elif message.type == Gst.MessageType.ERROR:
            err, debug = message.parse_error()
            return f"{err.message} ({debug})" if debug else err.message
        elif message.type == Gst.MessageType.EOS:
            print(f"{done} windows edited", file=sys.stderr)
            return None


def main(argv):
    try:
        input_path, output_path, keep_format, properties = parse_args(argv)
        Gst.init(None)
        pipeline = build(input_path, output_path, keep_format, properties)
    except UsageError as e:
        print(f"edit.py: {e}", file=sys.stderr)
        return 2
    error = run(pipeline)
    pipeline.set_state(Gst.State.NULL)
    if error:
        print(f"edit.py: {error}", file=sys.stderr)
        return 1
    print(f"wrote {output_path}")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
