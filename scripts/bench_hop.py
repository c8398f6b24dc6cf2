#!/usr/bin/env python3
"""What serving the model through Cog costs per window against running it in-process.

    source scripts/ci/cog_model.sh && cargo build --release
    scripts/bench_hop.py --size 832x480 --frames 17 --windows 4

Edits the same clip (videotestsrc, `windows` windows of `frames` frames, no overlap) with
`wanedit backend=candle` in-process and with `wanedit backend=cog` through one deploy/cog
server on 127.0.0.1 running the same model (a tiny parity model on the CPU by default),
alternating, `repeats` times each, and prints the medians per window: the hop is the
difference (the client's encode and decode, the transfer, the predictor's own decode,
pipeline and encode). The server's log splits its part: from "Starting prediction" to
the end of the prediction, and the model's denoising steps within it.
"""

import argparse
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import urllib.request
from datetime import datetime
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = ROOT / "tests/fixtures/parity/v2v_wide_f9_1step/model"


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(venv, model, log):
    port = free_port()
    env = dict(
        os.environ,
        PATH=f"{venv}/bin:{os.environ['PATH']}",
        COG_PREDICT_TYPE_STUB="predict.py:Predictor",
        PORT=str(port),
        WANEDIT_MODEL=str(model),
        WANEDIT_DEVICE="cpu",
        GST_PLUGIN_PATH=str(ROOT / "target/release"),
    )
    server = subprocess.Popen(
        [f"{venv}/bin/python", "-m", "cog.server.http", "--host", "127.0.0.1"],
        cwd=ROOT / "deploy/cog",
        env=env,
        stdout=log,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    for _ in range(600):
        try:
            with urllib.request.urlopen(f"{url}/health-check", timeout=2) as answer:
                status = json.load(answer).get("status")
            if status == "READY":
                return server, url
            if status == "SETUP_FAILED":
                sys.exit(f"the server could not load the model; see {log.name}")
        except OSError:
            pass
        time.sleep(0.2)
    sys.exit(f"the server was not READY within 120 s; see {log.name}")


def edit(args, backend_properties):
    w, h = args.size.split("x")
    pipeline = (
        f"videotestsrc num-buffers={args.frames * args.windows} pattern=ball "
        f"! video/x-raw,format=I420,width={w},height={h},framerate=25/1 "
        f"! wanedit {backend_properties} resolution=native window-frames={args.frames} "
        f"overlap-frames=0 num-inference-steps={args.steps} seed=7 prompt='make it snow' "
        "! fakesink"
    )
    env = dict(os.environ, GST_PLUGIN_PATH=str(ROOT / "target/release"))
    start = time.monotonic()
    subprocess.run(["gst-launch-1.0", "-q", *pipeline.split()], check=True, env=env,
                   stdout=subprocess.DEVNULL)
    return (time.monotonic() - start) / args.windows


def at(record):
    return datetime.fromisoformat(record["timestamp"].replace("Z", "+00:00")).timestamp()


def server_split(log_path):
    """Per prediction: seconds from its start to its end, and within it from the first to
    the last denoising step."""
    starts, ends, steps = {}, {}, {}
    for line in Path(log_path).read_text().splitlines():
        try:
            record = json.loads(line)
        except ValueError:
            continue
        fields = record.get("fields", {})
        message, prediction = fields.get("message", ""), fields.get("prediction_id")
        if prediction is None:
            continue
        if message == "Starting prediction":
            starts[prediction] = at(record)
        elif message.startswith("wanedit: step progress"):
            steps.setdefault(prediction, []).append(at(record))
        elif message.startswith("Prediction") or message.startswith("wanedit: edited"):
            ends[prediction] = max(ends.get(prediction, 0), at(record))
    done = [p for p in starts if p in ends and p in steps]
    return (
        [ends[p] - starts[p] for p in done],
        [steps[p][-1] - steps[p][0] for p in done],
    )


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--size", default="832x480", help="WxH, multiples of 32")
    parser.add_argument("--frames", type=int, default=17, help="frames a window, 4n+1")
    parser.add_argument("--windows", type=int, default=4)
    parser.add_argument("--steps", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--model", default=str(TINY))
    args = parser.parse_args()
    venv = os.environ.get("WANEDIT_COG_MODEL_VENV", str(ROOT / "target/cog-model-venv"))

    log = tempfile.NamedTemporaryFile("w", prefix="wanedit-hop-", suffix=".log", delete=False)
    server, url = start_server(venv, args.model, log)
    try:
        local, served = [], []
        for _ in range(args.repeats):
            local.append(edit(args, f"backend=candle model={args.model} device=cpu"))
            served.append(edit(args, f"backend=cog endpoint={url}"))
    finally:
        os.killpg(server.pid, 15)
        server.wait()
    on_server, denoising = server_split(log.name)
    local_s, served_s = statistics.median(local), statistics.median(served)
    print(f"{args.size}, {args.frames} frames a window, {args.steps} steps, "
          f"{args.windows} windows x {args.repeats} runs, medians per window:")
    print(f"  in-process             {local_s:7.3f} s")
    print(f"  through Cog            {served_s:7.3f} s  ({served_s / local_s:.2f}x)")
    print(f"  hop                    {served_s - local_s:7.3f} s")
    print(f"  on the server          {statistics.median(on_server):7.3f} s "
          f"(denoising {statistics.median(denoising):.3f} s)")
    print(f"  server log: {log.name}")


if __name__ == "__main__":
    main()
