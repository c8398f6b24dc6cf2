# Sourced by .ci/run before `cargo test`: what the served model's tests need.
#
# tests/cog_model.rs serves deploy/cog (the plugin's own model behind Cog's server) on
# 127.0.0.1. Its predictor drives GStreamer through PyGObject, which Debian packages for
# its own Python (python3-gi, installed by scripts/install-deps.sh), so Cog goes into a
# virtual environment of that Python that sees its packages: target/cog-model-venv.
# Cog's server starts its worker as the `python` on PATH, so the tests put the
# environment's bin/ first on it.

cog_model_venv="$(dirname "${BASH_SOURCE[0]}")/../../target/cog-model-venv"
if ! "$cog_model_venv/bin/python" -c 'import cog.server.http, gi' 2>/dev/null; then
    /usr/bin/python3 -m venv --system-site-packages "$cog_model_venv"
    "$cog_model_venv/bin/python" -m pip install --quiet --disable-pip-version-check \
        -r "$(dirname "${BASH_SOURCE[0]}")/../../deploy/cog/requirements.txt"
fi
WANEDIT_COG_MODEL_VENV="$(cd "$cog_model_venv" && pwd)"
export WANEDIT_COG_MODEL_VENV
unset cog_model_venv
