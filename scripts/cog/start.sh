#!/usr/bin/env bash
# Starts the test predictor behind Cog's HTTP server on 127.0.0.1, one server per port:
#   scripts/cog/start.sh 5000 5001
# then: gst-launch-1.0 ... ! wanedit backend=cog endpoint=http://127.0.0.1:5000,http://127.0.0.1:5001 ! ...
# Needs `pip install -r scripts/cog/requirements.txt`; stop the servers with Ctrl-C.
set -euo pipefail
cd "$(dirname "$0")"
python="${WANEDIT_COG_PYTHON:-python3}"
pids=()
trap 'kill "${pids[@]}" 2>/dev/null' EXIT INT TERM
for port in "${@:-5000}"; do
    COG_PREDICT_TYPE_STUB=predict.py:Predictor PORT="$port" \
        "$python" -m cog.server.http --host 127.0.0.1 &
    pids+=($!)
done
wait
