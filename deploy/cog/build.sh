#!/usr/bin/env bash
# Builds the Cog image of wanedit's model: deploy/cog/build.sh [image] (default
# wanedit-cog). Needs Docker and the cog CLI (https://github.com/replicate/cog).
#
# The plugin's source goes to cog.yaml's build command as a build secret (Cog gives `run`
# commands no other way to read a file), with the CUDA compute capability to compile
# the kernels for: WANEDIT_CUDA_COMPUTE_CAP (default 90, H100 and H200).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/../.." && pwd)"
image="${1:-wanedit-cog}"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
mkdir "$work/src"
git -C "$root" archive HEAD -- Cargo.toml Cargo.lock build.rs src benches examples |
    tar -x -C "$work/src"
echo "${WANEDIT_CUDA_COMPUTE_CAP:-90}" >"$work/src/compute-cap"
tar -czf "$work/src.tar.gz" -C "$work/src" .
cd "$here"
cog build -t "$image" --secret "id=wanedit-src,src=$work/src.tar.gz"
