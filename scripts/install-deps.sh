#!/usr/bin/env bash
# Installs the Debian packages wanedit builds and runs with (needs root or sudo).
set -euo pipefail
sudo=""
[ "$(id -u)" = 0 ] || sudo=sudo
export DEBIAN_FRONTEND=noninteractive
$sudo apt-get update -qq
# libssl-dev is for building cargo-c (scripts/install_check.sh), not wanedit.
$sudo apt-get install -y -qq --no-install-recommends \
    build-essential pkg-config curl ca-certificates \
    libgstreamer1.0-dev libgstreamer-plugins-base1.0-dev \
    gstreamer1.0-plugins-base gstreamer1.0-plugins-good gstreamer1.0-plugins-bad \
    gstreamer1.0-plugins-ugly gstreamer1.0-libav gstreamer1.0-tools \
    gstreamer1.0-plugins-base-apps \
    libges-1.0-dev ges1.0-tools python3-gi gir1.2-gstreamer-1.0 gir1.2-gst-plugins-base-1.0 \
    libssl-dev \
    python3 python3-pip python3-venv >/dev/null
if ! command -v cargo >/dev/null; then
    curl -sSf https://sh.rustup.rs | sh -s -- -y --profile minimal --component clippy,rustfmt
    # shellcheck source=/dev/null
    source "$HOME/.cargo/env"
fi
