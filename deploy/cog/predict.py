"""wanedit's in-process Wan model (`backend=candle`) served as a Cog model.

Each prediction runs the clip it is given through the plugin itself:

    filesrc ! decodebin ! videoconvert ! wanedit backend=candle ! videoconvert ! x264enc
        ! mp4mux ! filesink

with one window as long as the clip (a client sends its own windows, 81 frames at most),
so the served model is the element's code: the same parity with diffusers, the same LoRA
merge, the same defaults as `backend=candle` in-process.

`setup()` loads the model once and keeps it: an element holding it stays in PAUSED for the
server's life, and the plugin gives every element that names the same model, device and
precision that copy. The configuration comes from the environment:

    WANEDIT_MODEL   a diffusers model directory or a Hugging Face repo id in the local
                    cache (required)
    WANEDIT_DEVICE  cuda, cuda:N or cpu (default: the plugin's, cuda:0 in a CUDA build)
    WANEDIT_LORA    LoRAs merged at load, as the element's `lora` property

The inputs are those `wanedit backend=cog` sends, under the same names and with the
defaults the element's own model defaults are.
"""

import os
import sys
import tempfile

import gi

# Where cog.yaml installs the plugin; GST_PLUGIN_PATH, where set, is used instead.
PLUGIN_DIR = "/opt/wanedit/plugin"
if os.path.isdir(PLUGIN_DIR):
    os.environ.setdefault("GST_PLUGIN_PATH", PLUGIN_DIR)

gi.require_version("Gst", "1.0")
gi.require_version("GstPbutils", "1.0")
from gi.repository import Gst, GstPbutils  # noqa: E402

from cog import BasePredictor, Input, Path  # noqa: E402

# diffusers' defaults of the Wan pipelines, which backend=candle applies to what a
# pipeline leaves unset.
DEFAULT_STEPS = 50
DEFAULT_GUIDANCE = 5.0
DEFAULT_STRENGTH = 0.8

# A Wan window is 81 frames at most: a clip no longer than that is one window, edited
# at its own length (the element takes any 4n+1 from 5 up).
MAX_WINDOW = 81

# The edited clip goes back as H.264 at this constant quantiser: at 10 the hop costs
# about as much as the client's own upload encoding (docs/serving.md has the
# measurements), and an 81-frame 480p window stays a few MiB.
QUANTIZER = 10

# The bus is read in slices this long: a cancellation is raised in the predicting
# thread between two Python steps, never inside a blocking call.
BUS_SLICE = 50 * Gst.MSECOND

WATCHED = (
    Gst.MessageType.EOS
    | Gst.MessageType.ERROR
    | Gst.MessageType.ASYNC_DONE
    | Gst.MessageType.PROGRESS
    | Gst.MessageType.ELEMENT
)

# The Wan buckets a client sends windows at (backend=cog, resolution=480p or 720p).
BUCKETS = {
    "480p": {(832, 480), (480, 832), (624, 624)},
    "720p": {(1280, 720), (720, 1280), (960, 960)},
}


class SetupError(RuntimeError):
    """The model cannot be served; the text says what to fix."""


def log(text):
    print(f"wanedit: {text}", file=sys.stderr, flush=True)


def resolution_for(width, height):
    """The element's `resolution` for a clip of this size: the input size where every Wan
    model takes it (multiples of 32), else the class of the bucket the client sent, which
    the element maps onto the model's own (Wan2.2's 608x608 for 624x624)."""
    if width % 32 == 0 and height % 32 == 0:
        return "native"
    for name, sizes in BUCKETS.items():
        if (width, height) in sizes:
            return name
    return "native"


def next_message(bus):
    """The next message that matters on `bus`, or None after `BUS_SLICE`; load and step
    progress is logged on the way."""
    message = bus.timed_pop_filtered(BUS_SLICE, WATCHED)
    if message is None:
        return None
    if message.type == Gst.MessageType.PROGRESS:
        _, code, text = message.parse_progress()
        if code == "load-model":
            log(text)
        return None
    if message.type == Gst.MessageType.ELEMENT:
        # One line per denoising step: a cancellation shows which step it stopped at.
        structure = message.get_structure()
        if structure.get_name() == "wanedit-window" and structure.get_value("state") == "running":
            log(f"step progress {structure.get_value('progress'):.3f}")
        return None
    return message


def reach(pipeline, state, until):
    """Takes `pipeline` to `state` and reads its bus until a message of type `until`
    (ASYNC_DONE once PAUSED has loaded the model, EOS once a clip is edited). An error on
    the bus is raised with the element's text; on an error or a cancellation raised
    meanwhile, the pipeline goes to NULL, which stops the model at its next step."""
    bus = pipeline.get_bus()
    try:
        if pipeline.set_state(state) == Gst.StateChangeReturn.FAILURE:
            raise RuntimeError("the pipeline would not start")
        while True:
            message = next_message(bus)
            if message is None:
                continue
            if message.type == Gst.MessageType.ERROR:
                error, debug = message.parse_error()
                raise RuntimeError(f"{error.message} ({debug})" if debug else error.message)
            if message.type == until:
                return
    except BaseException:
        pipeline.set_state(Gst.State.NULL)
        raise


class Predictor(BasePredictor):
    def setup(self):
        Gst.init(None)
        if Gst.ElementFactory.find("wanedit") is None:
            raise self.failed(
                "the wanedit GStreamer plugin is not installed: install it (cargo cinstall) "
                "or point GST_PLUGIN_PATH at the folder that holds libgstwanedit.so"
            )
        model = os.environ.get("WANEDIT_MODEL")
        if not model:
            raise self.failed(
                "WANEDIT_MODEL is not set: set it to a diffusers model directory (with "
                "model_index.json) or a Hugging Face repo id in the local cache"
            )
        self.model = {"backend": "candle", "model": model}
        if os.environ.get("WANEDIT_DEVICE"):
            self.model["device"] = os.environ["WANEDIT_DEVICE"]
        if os.environ.get("WANEDIT_LORA"):
            self.model["lora"] = os.environ["WANEDIT_LORA"]
        # The element that holds the model: PAUSED with nothing linked, it loads the
        # model and keeps it until the server stops.
        self.keeper = Gst.Pipeline.new("wanedit-model")
        holder = Gst.ElementFactory.make("wanedit", None)
        self.configure(holder, {})
        self.keeper.add(holder)
        try:
            reach(self.keeper, Gst.State.PAUSED, Gst.MessageType.ASYNC_DONE)
        except RuntimeError as error:
            raise self.failed(
                f"cannot load {model}: {error}. Check WANEDIT_MODEL (a model directory or a "
                "repo id in the Hugging Face cache), WANEDIT_DEVICE and WANEDIT_LORA"
            ) from None
        log(f"model {model} loaded; serving")

    @staticmethod
    def failed(text):
        log(text)
        return SetupError(text)

    def configure(self, element, settings):
        """Gives a `wanedit` element the served model and `settings` (property: value)."""
        for name, value in {**self.model, **settings}.items():
            if name in ("backend", "resolution"):
                Gst.util_set_object_arg(element, name, value)
            else:
                element.set_property(name, value)

    def predict(
        self,
        video: Path = Input(description="The clip to edit (MP4), one window: 5 to 81 frames"),
        prompt: str = Input(description="The edit, in plain words"),
        negative_prompt: str = Input(description="What the edit should avoid", default=""),
        seed: int = Input(description="Random seed (unset: a random one)", default=None),
        num_inference_steps: int = Input(
            description="Denoising steps", default=DEFAULT_STEPS, ge=1, le=1000
        ),
        guidance_scale: float = Input(
            description="Classifier-free guidance scale (1: none)",
            default=DEFAULT_GUIDANCE,
            ge=0.0,
            le=100.0,
        ),
        strength: float = Input(
            description="How far the edit may move from the source (video-to-video models)",
            default=DEFAULT_STRENGTH,
            ge=0.0,
            le=1.0,
        ),
        flow_shift: float = Input(
            description="Shift of the flow-matching schedule (unset: the model's)",
            default=None,
            ge=0.0,
            le=100.0,
        ),
        reference_image: Path = Input(
            description="An image that guides the edit (VACE models)", default=None
        ),
    ) -> Path:
        info = GstPbutils.Discoverer.new(60 * Gst.SECOND).discover_uri(
            Gst.filename_to_uri(str(video))
        )
        streams = info.get_video_streams()
        if not streams:
            raise ValueError("the video input holds no video stream: send an MP4 clip")
        width, height = streams[0].get_width(), streams[0].get_height()
        settings = {
            "prompt": prompt,
            "num-inference-steps": num_inference_steps,
            "guidance-scale": guidance_scale,
            "strength": strength,
            "window-frames": MAX_WINDOW,
            "overlap-frames": 0,
            "resolution": resolution_for(width, height),
        }
        if negative_prompt:
            settings["negative-prompt"] = negative_prompt
        if seed is not None:
            settings["seed"] = seed
        if flow_shift is not None:
            settings["flow-shift"] = flow_shift
        if reference_image is not None:
            settings["reference-image"] = str(reference_image)

        out = Path(tempfile.mkdtemp(prefix="wanedit-cog-")) / "edited.mp4"
        pipeline = Gst.parse_launch(
            "filesrc name=src ! decodebin ! videoconvert ! wanedit name=edit ! videoconvert "
            f"! x264enc pass=quant quantizer={QUANTIZER} speed-preset=veryfast bframes=0 "
            "! mp4mux ! filesink name=sink"
        )
        pipeline.get_by_name("src").set_property("location", str(video))
        pipeline.get_by_name("sink").set_property("location", str(out))
        self.configure(pipeline.get_by_name("edit"), settings)
        try:
            reach(pipeline, Gst.State.PLAYING, Gst.MessageType.EOS)
        except RuntimeError as error:
            raise RuntimeError(f"editing a {width}x{height} clip: {error}") from None
        finally:
            pipeline.set_state(Gst.State.NULL)
        log(f"edited a {width}x{height} clip for prompt {prompt!r}")
        return out
