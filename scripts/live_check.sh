#!/usr/bin/env bash
# The live check: `videotestsrc is-live=true` (pattern smpte, its default) at 1080p60 I420
# through wanedit (window-frames=81, overlap-frames=16, max-in-flight=4,
# processing-latency=2500) with a backend that answers at once, into an appsink with
# sync=true, for 60 s of wall time; then EOS.
#
#   scripts/live_check.sh [--seconds N] [--pattern NAME] [--processing-latency MS]
#
# What it measures (examples/live_check.rs):
# - frames the source produced and frames that came out, their PTS compared one by one
#   (equal: no frame lost, duplicated or reordered), and gaps in the output PTS;
# - the latency the pipeline reported (latency query) and, for every frame, the time it
#   reached the sink minus (its running time + that latency): the worst of these is the
#   delay beyond the reported latency, and frames later than one frame duration are counted,
#   apart for those due after EOS was sent (the drain of the run's last windows, which a
#   live stream that never ends does not reach);
# - how far the source pushed frames behind its own clock: the element's back-pressure,
#   which a real camera would turn into dropped frames;
# - QoS messages on the bus, and the process's CPU use: user+sys over wall time, in cores,
#   with the load average before and after (other processes share the machine), and CPU
#   time per frame, which says how many cores 60 fps takes whatever else runs; and what
#   a frame of the source costs drawn alone (before the run), to tell it from the element.
# It exits non-zero if a frame was lost, duplicated or reordered, or the stream errored;
# whether it kept up (no frame due before EOS late, the source never held back) is printed
# ("keeps up: yes/NO"), as it depends on the machine.
set -euo pipefail
cd "$(dirname "$0")/.."

nice -n 10 cargo build --release --example live_check
exec target/release/examples/live_check "$@"
