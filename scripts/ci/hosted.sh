# Sourced by .ci/run before `cargo test`: what the hosted backends' tests need.
#
# tests/cog_server.rs starts real Cog servers on 127.0.0.1 (it starts and stops them
# itself) with the predictor in scripts/cog/, which needs Cog's HTTP server, NumPy and
# PyAV from PyPI. The other hosted tests use loopback servers written in Rust and need
# nothing more. No test reaches beyond 127.0.0.1.

hosted_python="${WANEDIT_COG_PYTHON:-python3}"
if ! "$hosted_python" -c 'import cog.server.http, av, numpy' 2>/dev/null; then
    "$hosted_python" -m pip install --quiet --disable-pip-version-check \
        -r "$(dirname "${BASH_SOURCE[0]}")/../cog/requirements.txt"
fi
export WANEDIT_COG_PYTHON="$hosted_python"
unset hosted_python
