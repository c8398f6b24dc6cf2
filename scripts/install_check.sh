#!/usr/bin/env bash
# Installs the plugin as users and distributions install gst-plugins-rs plugins (cargo-c)
# into a temporary prefix, then checks that GStreamer finds it there with that prefix's
# plugin directory as its only plugin path: no GST_PLUGIN_PATH, no cached registry.
# .ci/run runs it.
set -euo pipefail
cd "$(dirname "$0")/.."

fail() {
    echo "scripts/install_check.sh: $*" >&2
    exit 1
}

# cargo-c builds much of cargo itself: only when it is missing, and unoptimized, which
# takes a fraction of the time. Later releases need a newer rustc than the project's.
if ! cargo cinstall --version >/dev/null 2>&1; then
    CARGO_PROFILE_DEV_DEBUG=false cargo install cargo-c --version 0.10.24 --locked --debug
fi

tmp="$(mktemp -d)"
trap 'rm -rf "$tmp"' EXIT
libdir="$tmp/lib"
# cargo-c gives each dependency compiler arguments of its own, and cargo fingerprints them,
# so nothing of `cargo build --release` is reused: this is a second build of everything.
# Unoptimized it takes a fraction of the time and installs the same files.
CARGO_PROFILE_DEV_DEBUG=false cargo cinstall --debug --prefix "$tmp" --libdir "$libdir"

plugin="$libdir/gstreamer-1.0/libgstwanedit.so"
if [ ! -f "$plugin" ]; then
    installed="$(cd "$tmp" && find . -type f | sort | tr '\n' ' ')"
    fail "cargo cinstall put no $plugin (Cargo.toml's [package.metadata.capi.library] says where); it installed: ${installed:-nothing}"
fi
# An unversioned module, as GStreamer loads every file in its plugin directories.
versioned="$(find "$libdir" -name 'libgstwanedit.so.*')"
[ -z "$versioned" ] || fail "versioned copies of the plugin next to it: $versioned (set versioning = false)"

pc_dir="$libdir/pkgconfig"
[ -f "$pc_dir/gstwanedit.pc" ] || fail "no $pc_dir/gstwanedit.pc, which cargo-c writes from Cargo.toml's [package.metadata.capi.pkg_config]"
pc_version="$(PKG_CONFIG_PATH="$pc_dir" pkg-config --modversion gstwanedit)" \
    || fail "pkg-config cannot read $pc_dir/gstwanedit.pc"
crate_version="$(sed -n 's/^version = "\(.*\)"$/\1/p' Cargo.toml | head -n 1)"
[ "$pc_version" = "$crate_version" ] \
    || fail "gstwanedit.pc says version $pc_version, Cargo.toml $crate_version"

# What a user's shell would do after installing into the distribution's plugin directory.
inspect="$(env -u GST_PLUGIN_PATH -u GST_PLUGIN_PATH_1_0 -u GST_PLUGIN_SYSTEM_PATH \
    -u GST_REGISTRY_1_0 \
    GST_PLUGIN_SYSTEM_PATH_1_0="$libdir/gstreamer-1.0" GST_REGISTRY="$tmp/registry.bin" \
    gst-inspect-1.0 wanedit 2>&1)" \
    || fail "gst-inspect-1.0 does not find wanedit in $libdir/gstreamer-1.0:"$'\n'"$inspect"
for expected in \
    "Filename                 $plugin" \
    "Factory Details:" \
    "Long-name                Wan video edit" \
    "prompt              :"; do
    grep -qF -- "$expected" <<<"$inspect" \
        || fail "gst-inspect-1.0 wanedit has no \"$expected\":"$'\n'"$inspect"
done
echo "scripts/install_check.sh: wanedit installs into <libdir>/gstreamer-1.0 and GStreamer finds it there"
