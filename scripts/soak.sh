#!/usr/bin/env bash
# The soak: one hour of generated 480p30 video (108,000 frames) through wanedit, whose
# loopback provider (Replicate's protocol, on 127.0.0.1) injects faults at random from a
# seed: about 1 request in 20 gets a transient status (408, 425, 429, 500, 502, 503, 504),
# a reset, a stall or a truncated body, and every 20th job fails. Jobs take 0.5 to 3 s,
# max-in-flight=4.
#
#   scripts/soak.sh [--frames N] [--seed N] [--rate P] [--fail-every N] [--max-in-flight N]
#                   [--min-job S] [--max-job S] [--request-timeout S] [--stall S]
#                   [--rss-every S]
#
# It prints a line every 10 s (frames in and out, RSS), then the report: frames in and
# out, PTS, windows retried and failed, faults served, peak and final RSS. It exits
# non-zero if a frame was lost, a PTS changed, RSS went over (max-in-flight + 2) windows
# of frames + 150 MiB, or RSS grew in the last half of the run. Frames are pushed as fast
# as the element takes them: an hour of video takes about 35 minutes on 2 cores.
# The same runs in CI for 2 minutes of video: tests/soak.rs. Figures: docs/reliability.md.
set -euo pipefail
cd "$(dirname "$0")/.."

nice -n 10 cargo build --release --example soak
exec nice -n 10 target/release/examples/soak "$@"
