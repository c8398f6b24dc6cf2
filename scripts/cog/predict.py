"""A Cog predictor that really edits video, for wanedit's self-hosted backend tests.

It stands in for a Wan model: it decodes the clip with PyAV, inverts red and green,
and writes the frame's index within the clip into blue (3 * index, capped at 255), so
that a test can tell which window, and which frame of it, every output pixel came from.
The clip is written back as H.264 MP4 at the input's frame rate.
"""

import av
import numpy as np
from cog import BasePredictor, Input, Path


class Predictor(BasePredictor):
    def predict(
        self,
        video: Path = Input(description="The clip to edit (MP4)"),
        prompt: str = Input(description="The edit; only logged here", default=""),
        seed: int = Input(description="Ignored; accepted as Wan models do", default=None),
    ) -> Path:
        out_path = Path("/tmp") / f"cog-edit-{id(self)}-{np.random.randint(1 << 30)}.mp4"
        with av.open(str(video)) as src, av.open(str(out_path), "w") as dst:
            in_stream = src.streams.video[0]
            rate = in_stream.average_rate or 16
            out_stream = dst.add_stream("libx264", rate=rate)
            out_stream.pix_fmt = "yuv420p"
            out_stream.options = {"crf": "10", "preset": "ultrafast"}
            first = True
            for index, frame in enumerate(src.decode(in_stream)):
                rgb = frame.to_ndarray(format="rgb24")
                if first:
                    out_stream.width = rgb.shape[1]
                    out_stream.height = rgb.shape[0]
                    first = False
                edited = np.empty_like(rgb)
                edited[..., 0] = 255 - rgb[..., 0]
                edited[..., 1] = 255 - rgb[..., 1]
                edited[..., 2] = min(255, 3 * index)
                for packet in out_stream.encode(av.VideoFrame.from_ndarray(edited, format="rgb24")):
                    dst.mux(packet)
            for packet in out_stream.encode():
                dst.mux(packet)
        print(f"edited {index + 1} frames for prompt {prompt!r}")
        return out_path
