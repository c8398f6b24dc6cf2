#!/usr/bin/env bash
# The main job, end to end on one machine without GPU or network: edit a video with
# wanedit through a self-hosted Cog server, keeping the audio.
#
#   scripts/demo.sh [INPUT.mp4] [OUTPUT.mp4]
#
# Without INPUT it makes a 10 s test clip with sound. The Cog server runs the small
# stand-in predictor in scripts/cog/ (it inverts red and green; a real deployment runs a
# Wan model behind the same protocol, or uses a hosted provider, see README.md).
set -euo pipefail
cd "$(dirname "$0")/.."

scripts/install-deps.sh
python="${WANEDIT_COG_PYTHON:-python3}"
"$python" -c 'import cog.server.http, av, numpy' 2>/dev/null ||
    "$python" -m pip install --quiet --disable-pip-version-check -r scripts/cog/requirements.txt

input="${1:-demo-in.mp4}"
output="${2:-demo-out.mp4}"
if [ ! -e "$input" ]; then
    echo "making a test clip: $input"
    # I420: x264enc encodes the raw format it is given, and videotestsrc's first is 4:4:4,
    # which browsers and phones do not play.
    gst-launch-1.0 -q videotestsrc num-buffers=250 pattern=ball \
        ! video/x-raw,format=I420,width=640,height=360,framerate=25/1 ! x264enc \
        ! video/x-h264,profile=high ! queue ! mux. \
        audiotestsrc num-buffers=470 ! audioconvert ! avenc_aac ! queue ! mux. \
        mp4mux name=mux ! filesink location="$input"
fi

port=$(( 20000 + RANDOM % 20000 ))
(cd scripts/cog && COG_PREDICT_TYPE_STUB=predict.py:Predictor PORT="$port" \
    exec "$python" -m cog.server.http --host 127.0.0.1) >cog-demo.log 2>&1 &
server=$!
trap 'kill "$server" 2>/dev/null || true' EXIT
for _ in $(seq 120); do
    if curl -fsS "http://127.0.0.1:$port/health-check" 2>/dev/null | grep -q READY; then
        break
    fi
    kill -0 "$server" 2>/dev/null || { cat cog-demo.log; exit 1; }
    sleep 0.5
done

cargo run --release --example edit -- "$input" "$output" \
    --prompt "invert the colours" --backend cog --endpoint "http://127.0.0.1:$port"
gst-discoverer-1.0 "$output" | sed -n '1,20p'
# What players need: H.264 High (or Main), 4:2:0, 8-bit.
caps=$(gst-launch-1.0 -v filesrc location="$output" ! qtdemux ! h264parse ! fakesink 2>/dev/null |
    grep -m1 -o 'video/x-h264.*parsed=(boolean)true.*' || true)
for want in 'chroma-format=(string)4:2:0' 'bit-depth-luma=(uint)8' 'profile=(string)high'; do
    if [[ "$caps" != *"$want"* ]]; then
        echo "$output is not what every player plays: $want missing from $caps" >&2
        exit 1
    fi
done
echo "$output: H.264 High, 4:2:0, 8-bit"
